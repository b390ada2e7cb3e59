//! Service keys: which service a PUSH request is for (SPEC §2), the
//! second half of a forwarding's key in the store.

/// Longest service key kept (method, `:`, media type or event package).
pub const MAX_SERVICE_LEN: usize = 128;

/// The service key of a request: the method, plus the `Event` package for
/// NOTIFY or the media type for other methods (`MESSAGE:text/plain`).
pub fn service_key(method: &str, event: Option<&[u8]>, content_type: Option<&[u8]>) -> String {
    let mut key = String::new();
    service_key_into(method, event, content_type, &mut key);
    key
}

/// What a service key is made of besides the method: the `Event` package
/// for NOTIFY, the media type for other methods.
/// Whether the service key of a request with `method` is made of its
/// `Event` package (NOTIFY, RFC 6665) rather than its media type: the host
/// need read only that header.
pub fn keyed_by_event(method: &[u8]) -> bool {
    method.eq_ignore_ascii_case(b"NOTIFY")
}

pub(super) fn service_detail<'a>(
    method: &str,
    event: Option<&'a [u8]>,
    content_type: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if keyed_by_event(method.as_bytes()) {
        event
    } else {
        content_type
    }
}

/// [`service_key`] into `key` (cleared first), reusing its buffer.
pub fn service_key_into(
    method: &str,
    event: Option<&[u8]>,
    content_type: Option<&[u8]>,
    key: &mut String,
) {
    service_key_of(method, service_detail(method, event, content_type), key);
}

/// [`service_key_into`] with the detail chosen already (see
/// [`service_detail`]).
pub(super) fn service_key_of(method: &str, detail: Option<&[u8]>, key: &mut String) {
    key.clear();
    key.push_str(method);
    key.make_ascii_uppercase();
    // The type/subtype or package, without parameters and whitespace,
    // lower-cased, checked and copied in one pass; a value with other
    // bytes than those is not used.
    if let Some(d) = detail {
        let mark = key.len();
        key.push(':');
        let mut graphic = false;
        for &c in d.iter().take_while(|&&c| c != b';') {
            if c.is_ascii_graphic() {
                graphic = true;
                if key.len() <= MAX_SERVICE_LEN {
                    key.push(char::from(c.to_ascii_lowercase()));
                }
            } else if c != b' ' && c != b'\t' {
                graphic = false;
                break;
            }
        }
        if !graphic {
            key.truncate(mark);
        }
    }
    if key.len() > MAX_SERVICE_LEN {
        let mut cut = MAX_SERVICE_LEN;
        while !key.is_char_boundary(cut) {
            cut -= 1;
        }
        key.truncate(cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_of_a_notify_is_its_event_package_of_anything_else_its_media_type() {
        for (m, event) in [
            ("NOTIFY", true),
            ("notify", true),
            ("MESSAGE", false),
            ("NOTIFYX", false),
            ("", false),
        ] {
            assert_eq!(keyed_by_event(m.as_bytes()), event, "{m}");
            let detail = service_detail(m, Some(b"presence"), Some(b"text/plain"));
            assert_eq!(
                detail,
                Some(if event {
                    &b"presence"[..]
                } else {
                    &b"text/plain"[..]
                }),
                "{m}"
            );
        }
    }
}
