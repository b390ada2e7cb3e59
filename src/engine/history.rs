//! History-Info (RFC 7044, with RFC 4458's `cause`) and Diversion
//! (RFC 5806) for the branches of a decision (SPEC §4).
//!
//! `push_lookup`'s first delivery to the AOR's own registered contacts
//! adds none ([`adds_entries`]: nothing has been forwarded yet); every
//! other new branch gets the entries of its own path: the entry of the
//! original Request-URI (unless the request arrived with it), then, in the
//! order they were added, each entry of the transaction that is an
//! ancestor of the branch's entry, or an earlier sibling of it (or of an
//! ancestor) tried in an earlier round; then its own entry. Siblings sent
//! in the same round (parallel forking) do not see each other.
//!
//! Indexes extend the index of the entry a target was retargeted from:
//! the registered contacts of the AOR are `1.1`, `1.2`, ... (`rc=1`); the
//! Contact of a 3xx answered by `1.1` is `1.1.1` (`mp=1.1`, or `rc` when it
//! is a registered contact of the same AOR); a local AOR named by a target
//! gets its own entry (`mp`) and its contacts entries below it (`rc`). The
//! entry of a target that answered carries its status as an escaped Reason
//! (`?Reason=SIP%3Bcause%3D302`); the entry of a target reached because
//! another failed or redirected carries RFC 4458's `cause` URI parameter:
//! the status that moved the request there (408 for no answer), or, for a
//! stored forwarding, the status it was learned from (301, 302); a
//! provisioned forwarding used because no terminal is registered has 480.
//!
//! The entries the request arrived with stay in the message untouched (the
//! module adds its entries as one more History-Info header row). They are
//! read (zero-copy, [`parse_entries`]) only to find the index to extend,
//! and only when they are well-formed and within the caps
//! ([`MAX_INCOMING_ROWS`], [`MAX_INCOMING_ENTRIES`], [`MAX_INCOMING_BYTES`],
//! [`MAX_INCOMING_DEPTH`]); otherwise they are not trusted and this proxy's
//! entries start at index `1`. Nothing in them steers a decision.
//!
//! What the next round needs (the entries made so far, and where the
//! pending Contacts of a 3xx came from) travels in the transaction's memo,
//! as `h` and `p` lines after the engine's own (see [`super::memo`]).

use std::cell::RefCell;

use super::decision::{Branch, Decision, Origin, Reason};
use super::host::Host;
use super::memo::{push_decimal, DERIVED};
use crate::chars;
use crate::config::Config;
use crate::forwarding::ForwardingKind;
use crate::parser;

/// Most History-Info header rows of a request that are read.
pub const MAX_INCOMING_ROWS: usize = 8;
/// Most entries of a request's History-Info that are read.
pub const MAX_INCOMING_ENTRIES: usize = 64;
/// Most bytes of a request's History-Info (all rows) that are read.
pub const MAX_INCOMING_BYTES: usize = 8192;
/// Deepest index of a request's History-Info that is read.
pub const MAX_INCOMING_DEPTH: usize = 8;
/// Deepest index this proxy writes (incoming depth plus its own rounds;
/// a target that would be deeper gets no History-Info).
pub const MAX_DEPTH: usize = 16;
/// Most entries of this proxy a transaction's memo keeps.
pub const MAX_ENTRIES: usize = 64;
/// Most pending-Contact origins a transaction's memo keeps.
pub const MAX_ORIGINS: usize = 64;

/// An hi-index (`1.1.2`): up to [`MAX_DEPTH`] numbers, no allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Index {
    parts: [u16; MAX_DEPTH],
    len: u8,
}

impl std::fmt::Debug for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for Index {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::new();
        self.write(&mut out);
        f.write_str(std::str::from_utf8(&out).unwrap_or(""))
    }
}

impl Index {
    /// `1`: the first entry.
    pub fn root() -> Index {
        let mut parts = [0u16; MAX_DEPTH];
        parts[0] = 1;
        Index { parts, len: 1 }
    }

    /// `index-val = number *("." number)` (RFC 7044 §9.1); `None` for
    /// anything else, a number over 65535 or more than `max_depth` numbers.
    pub fn parse(s: &[u8], max_depth: usize) -> Option<Index> {
        let mut parts = [0u16; MAX_DEPTH];
        let mut len = 0usize;
        for n in s.split(|&c| c == b'.') {
            if n.is_empty() || n.len() > 5 || !n.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let v: u32 = n.iter().fold(0u32, |v, &c| v * 10 + u32::from(c - b'0'));
            let slot = parts.get_mut(len).filter(|_| len < max_depth)?;
            *slot = u16::try_from(v).ok()?;
            len += 1;
        }
        Some(Index {
            parts,
            len: u8::try_from(len).ok()?,
        })
    }

    /// Its numbers.
    pub fn parts(&self) -> &[u16] {
        self.parts.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// `self.n`, if not too deep.
    pub fn child(&self, n: u16) -> Option<Index> {
        let mut c = *self;
        *c.parts.get_mut(usize::from(self.len))? = n;
        c.len += 1;
        Some(c)
    }

    /// The index this one extends (`None` for a top-level one).
    pub fn parent(&self) -> Option<Index> {
        (self.len > 1).then(|| {
            let mut p = *self;
            p.len -= 1;
            if let Some(x) = p.parts.get_mut(usize::from(p.len)) {
                *x = 0;
            }
            p
        })
    }

    /// Whether `self` is `other` or one of the indexes it extends.
    pub fn is_ancestor_or_self(&self, other: &Index) -> bool {
        other.parts().starts_with(self.parts())
    }

    /// Appends it as text.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.reserve(2 * usize::from(self.len));
        for (k, &p) in self.parts().iter().enumerate() {
            if k > 0 {
                out.push(b'.');
            }
            // Almost every number is one digit.
            match u8::try_from(p) {
                Ok(d @ 0..=9) => out.push(b'0' + d),
                _ => push_decimal(out, u32::from(p)),
            }
        }
    }
}

/// Why a request's History-Info is not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HiError {
    /// Not `hi-entry *(COMMA hi-entry)` with an index in every entry.
    Malformed,
    /// More rows, entries or bytes than the caps.
    TooLarge,
    /// An index deeper than [`MAX_INCOMING_DEPTH`].
    TooDeep,
}

impl std::fmt::Display for HiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HiError::Malformed => "malformed History-Info",
            HiError::TooLarge => "History-Info over the caps",
            HiError::TooDeep => "History-Info index too deep",
        })
    }
}

/// One hi-entry, borrowed from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HiEntry<'a> {
    /// The hi-targeted-to-uri, between `<` and `>`.
    pub uri: &'a [u8],
    /// Its `index`.
    pub index: Index,
    /// Its `rc` parameter, if any.
    pub rc: Option<Index>,
    /// Its `mp` parameter, if any.
    pub mp: Option<Index>,
}

fn skip_lws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// `quoted-string`: from the opening quote at `i`, the position after the
/// closing one.
fn quoted_string(s: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match s.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
}

/// `hi-targeted-to-uri = name-addr`: `[display-name] LAQUOT addr-spec
/// RAQUOT`; the URI and the position after `>`.
fn hi_targeted_to_uri(s: &[u8], mut i: usize) -> Option<(&[u8], usize)> {
    // display-name: tokens or a quoted-string, up to `<`
    loop {
        i = skip_lws(s, i);
        match s.get(i)? {
            b'<' => break,
            b'"' => i = quoted_string(s, i)?,
            c if chars::is(*c, chars::TOKEN) => i += 1,
            _ => return None,
        }
    }
    let start = i + 1;
    let len = chars::find_byte(s.get(start..)?, b'>')?;
    let uri = s.get(start..start + len)?;
    if uri.is_empty() || uri.iter().any(|&c| c <= b' ' || c == b'<') {
        return None;
    }
    Some((uri, start + len + 1))
}

/// One `hi-param`: its name, its value (if any), and where it ends.
struct Param<'a> {
    name: &'a [u8],
    value: Option<&'a [u8]>,
    end: usize,
}

/// `hi-param = hi-index / hi-target-param / hi-extension`, from after the
/// `;` (an extension is a `generic-param`: token, host or quoted-string).
fn hi_param(s: &[u8], i: usize) -> Option<Param<'_>> {
    let mut i = skip_lws(s, i);
    let n0 = i;
    while s.get(i).is_some_and(|&c| chars::is(c, chars::TOKEN)) {
        i += 1;
    }
    let name = s.get(n0..i).filter(|n| !n.is_empty())?;
    i = skip_lws(s, i);
    if s.get(i) != Some(&b'=') {
        return Some(Param {
            name,
            value: None,
            end: i,
        });
    }
    i = skip_lws(s, i + 1);
    let v0 = i;
    if s.get(i) == Some(&b'"') {
        i = quoted_string(s, i)?;
    } else {
        while s
            .get(i)
            .is_some_and(|&c| chars::is(c, chars::TOKEN) || matches!(c, b':' | b'[' | b']'))
        {
            i += 1;
        }
    }
    let value = s.get(v0..i).filter(|v| !v.is_empty())?;
    Some(Param {
        name,
        value: Some(value),
        end: i,
    })
}

/// `hi-entry = hi-targeted-to-uri *( SEMI hi-param )`, with its index
/// (RFC 7044 §9.1 requires one); the entry and the position after it.
fn hi_entry(s: &[u8], i: usize) -> Result<(HiEntry<'_>, usize), HiError> {
    let (uri, mut i) = hi_targeted_to_uri(s, i).ok_or(HiError::Malformed)?;
    let (mut index, mut rc, mut mp) = (None, None, None);
    loop {
        i = skip_lws(s, i);
        if s.get(i) != Some(&b';') {
            break;
        }
        let Param { name, value, end } = hi_param(s, i + 1).ok_or(HiError::Malformed)?;
        i = end;
        let idx = |v: Option<&[u8]>| {
            let v = v.ok_or(HiError::Malformed)?;
            match Index::parse(v, MAX_INCOMING_DEPTH) {
                Some(x) => Ok(Some(x)),
                None if v.split(|&c| c == b'.').count() > MAX_INCOMING_DEPTH
                    && v.split(|&c| c == b'.')
                        .all(|n| Index::parse(n, 1).is_some()) =>
                {
                    Err(HiError::TooDeep)
                }
                None => Err(HiError::Malformed),
            }
        };
        if name.eq_ignore_ascii_case(b"index") {
            index = idx(value)?;
        } else if name.eq_ignore_ascii_case(b"rc") {
            rc = idx(value)?;
        } else if name.eq_ignore_ascii_case(b"mp") {
            mp = idx(value)?;
        }
    }
    let index = index.ok_or(HiError::Malformed)?;
    Ok((HiEntry { uri, index, rc, mp }, i))
}

/// `History-Info = hi-entry *(COMMA hi-entry)` over one header row's
/// value: each entry to `f`, at most `budget` of them (`TooLarge` past
/// it); returns how many.
pub fn parse_entries<'a>(
    row: &'a [u8],
    budget: usize,
    mut f: impl FnMut(HiEntry<'a>),
) -> Result<usize, HiError> {
    let mut i = 0;
    let mut n = 0;
    loop {
        let (e, next) = hi_entry(row, i)?;
        n += 1;
        if n > budget {
            return Err(HiError::TooLarge);
        }
        f(e);
        i = skip_lws(row, next);
        match row.get(i) {
            None => return Ok(n),
            Some(b',') => i += 1,
            Some(_) => return Err(HiError::Malformed),
        }
    }
}

/// What a request's History-Info rows say about the index to extend: the
/// last entry (if any is read), or why they are not read.
pub fn last_incoming<'a>(rows: &[&'a [u8]]) -> Result<Option<HiEntry<'a>>, HiError> {
    if rows.len() > MAX_INCOMING_ROWS
        || rows.iter().map(|r| r.len()).sum::<usize>() > MAX_INCOMING_BYTES
    {
        return Err(HiError::TooLarge);
    }
    let mut last = None;
    let mut budget = MAX_INCOMING_ENTRIES;
    for row in rows {
        budget -= parse_entries(row, budget, |e| last = Some(e))?;
    }
    Ok(last)
}

/// Whether a `Privacy` header value asks for `history` privacy (RFC 7044
/// §10.1: `priv-value *(";" priv-value)`, several rows joined by commas).
pub fn privacy_history(privacy: &[u8]) -> bool {
    privacy
        .split(|&c| c == b';' || c == b',')
        .any(|v| v.trim_ascii().eq_ignore_ascii_case(b"history"))
}

/// The RFC 5806 `reason` for a status.
pub fn diversion_reason(status: u16) -> &'static str {
    match status {
        486 | 600 => "user-busy",
        408 | 487 => "no-answer",
        301 => "unconditional",
        300..=399 => "deflection",
        _ => "unavailable",
    }
}

/// rc (another contact of the same AOR) or mp (another AOR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rc,
    Mp,
}

/// Where an entry's URI lives (positions, not borrows: the lists that
/// hold them are a worker's, reused from call to call).
#[derive(Debug, Clone, Copy)]
enum Uri {
    /// Bytes `start..start + len` of the previous round's memo.
    Memo(usize, usize),
    /// The Request-URI of the transaction's branch `i`.
    Tx(usize),
    /// The URI of the decision's branch `j`.
    Branch(usize),
    /// The local AOR the decision's branch `j` is a contact of.
    AorOf(usize),
}

/// One entry made by this proxy.
#[derive(Debug, Clone, Copy)]
struct Entry {
    index: Index,
    kind: Kind,
    cause: Option<u16>,
    round: u16,
    uri: Uri,
}

/// Where a pending Contact came from: the entry of the branch whose 3xx
/// named it, and that status; the Contact's URI (in the memo).
#[derive(Debug, Clone, Copy)]
struct PendingOrigin {
    parent: Index,
    cause: u16,
    uri: Uri,
}

/// A worker's lists and buffer for [`annotate`], reused.
#[derive(Default)]
struct Scratch {
    entries: Vec<Entry>,
    origins: Vec<PendingOrigin>,
    own: Vec<Option<usize>>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// The position of `part` (a sub-slice of `whole`) in it.
fn range_in(whole: &[u8], part: &[u8]) -> Uri {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    Uri::Memo(start, part.len())
}

/// The `h` and `p` lines of a memo.
fn read_memo(memo: &[u8], entries: &mut Vec<Entry>, origins: &mut Vec<PendingOrigin>) {
    for line in memo.split(|&c| c == b'\n') {
        let mut f = line.splitn(6, |&c| c == b' ');
        match f.next() {
            Some(b"h") if entries.len() < MAX_ENTRIES => {
                let (Some(idx), Some(kind), Some(cause), Some(round), Some(uri)) =
                    (f.next(), f.next(), f.next(), f.next(), f.next())
                else {
                    continue;
                };
                let Some(index) = Index::parse(idx, MAX_DEPTH) else {
                    continue;
                };
                let kind = match kind {
                    b"r" => Kind::Rc,
                    b"m" => Kind::Mp,
                    _ => continue,
                };
                if uri.is_empty() {
                    continue;
                }
                entries.push(Entry {
                    index,
                    kind,
                    cause: number(cause),
                    round: number(round).unwrap_or(0),
                    uri: range_in(memo, uri),
                });
            }
            Some(b"p") if origins.len() < MAX_ORIGINS => {
                let mut f = line.splitn(4, |&c| c == b' ').skip(1);
                let (Some(idx), Some(cause), Some(uri)) = (f.next(), f.next(), f.next()) else {
                    continue;
                };
                if let (Some(parent), Some(cause)) = (Index::parse(idx, MAX_DEPTH), number(cause)) {
                    origins.push(PendingOrigin {
                        parent,
                        cause,
                        uri: range_in(memo, uri),
                    });
                }
            }
            _ => {}
        }
    }
}

fn number(s: &[u8]) -> Option<u16> {
    if s.is_empty() || s.len() > 5 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    u16::try_from(s.iter().fold(0u32, |v, &c| v * 10 + u32::from(c - b'0'))).ok()
}

/// What [`annotate`] is given besides the decision.
pub(super) struct Inputs<'a> {
    pub(super) cfg: &'a Config,
    pub(super) host: &'a dyn Host,
    /// The Request-URI as received.
    pub(super) ruri: &'a [u8],
    /// The request's History-Info rows.
    pub(super) incoming: &'a [&'a [u8]],
    /// The request's Privacy header, if any.
    pub(super) privacy: Option<&'a [u8]>,
    /// The transaction's branches (none in `push_lookup`).
    pub(super) branches: &'a [Branch<'a>],
    /// The previous round's memo.
    pub(super) memo: &'a [u8],
    /// The kind of the stored forwarding applied, for its `cause`.
    pub(super) stored: Option<ForwardingKind>,
}

impl Inputs<'_> {
    fn bytes<'x>(&'x self, d: &'x Decision, u: Uri) -> &'x [u8] {
        match u {
            Uri::Memo(start, len) => self.memo.get(start..start + len).unwrap_or(&[]),
            Uri::Tx(i) => self.branches.get(i).map_or(&[][..], |b| b.uri),
            Uri::Branch(j) => d.branches.get(j).map_or(&[][..], |b| b.uri()),
            Uri::AorOf(j) => match d.branches.get(j).map(|b| &b.origin) {
                Some(Origin::AorOf(u)) => u.as_slice(),
                _ => &[],
            },
        }
    }
}

/// The current round's failed branches (the last one if none is marked).
fn current<'b>(branches: &'b [Branch<'b>]) -> impl Iterator<Item = &'b Branch<'b>> + Clone {
    let any = branches.iter().any(|b| b.current_round);
    let last = branches.len().saturating_sub(1);
    branches
        .iter()
        .enumerate()
        .filter(move |(i, b)| b.current_round || (!any && *i == last))
        .map(|(_, b)| b)
}

fn followable_3xx(status: u16) -> bool {
    (300..=399).contains(&status) && !matches!(status, 305 | 380)
}

/// Whether the branches of a round get this proxy's History-Info and
/// Diversion entries (the same answer for every branch of the round: the
/// tier it came from decides what its targets are). Every branch
/// `push_redirect` creates does: a redirect, a failover, a pending
/// Contact, a provisioned forwarding. So does `push_lookup`'s retarget by
/// a stored forwarding, learned (F6, F7) or provisioned (F5, no terminal
/// registered), with the contacts of a local AOR it names. Its first
/// delivery to the AOR's own registered contacts does not: nothing has
/// been forwarded yet, and registrar's `lookup()`, which it stands in for,
/// adds none; the entries the request arrived with pass on untouched.
/// The next round derives those contacts' entries from the transaction
/// (each branch's Request-URI and answer).
pub fn adds_entries(first_round: bool, reason: Reason) -> bool {
    !(first_round && reason == Reason::Registered)
}

/// Writes each new branch's History-Info (`cfg.history_info`) and
/// Diversion (`cfg.diversion`) values into it, and the entries into the
/// decision's memo. `reason`: the tier the branches came from. Nothing at
/// all for a round that adds no entries ([`adds_entries`]): no value, no
/// memo, so the module has nothing to add to the transaction.
pub(super) fn annotate(inp: &Inputs<'_>, reason: Reason, d: &mut Decision) {
    if !(inp.cfg.history_info || inp.cfg.diversion)
        || d.branches.is_empty()
        || !adds_entries(inp.branches.is_empty(), reason)
    {
        return;
    }
    let Ok(mut s) = SCRATCH.try_with(|s| s.take()) else {
        return;
    };
    annotate_with(inp, reason, d, &mut s);
    s.entries.clear();
    s.origins.clear();
    s.own.clear();
    let _ = SCRATCH.try_with(|x| *x.borrow_mut() = s);
}

fn annotate_with(inp: &Inputs<'_>, reason: Reason, d: &mut Decision, s: &mut Scratch) {
    let Scratch {
        entries,
        origins,
        own,
        out,
    } = s;
    entries.clear();
    origins.clear();
    own.clear();
    // The index to extend, and whether the R-URI's entry is ours to write.
    let (root, root_is_ours) = match last_incoming(inp.incoming) {
        Ok(None) => (Index::root(), true),
        Ok(Some(last)) => match (parse_uri(last.uri), parse_uri(inp.ruri)) {
            (Some(a), Some(b)) if a.same_target(&b) => (last.index, false),
            _ => match last.index.child(1) {
                Some(i) => (i, true),
                None => (Index::root(), true),
            },
        },
        Err(e) => {
            d.warn(|| format!("{e} in the request: not read, entries start at index 1"));
            (Index::root(), true)
        }
    };

    read_memo(inp.memo, entries, origins);
    // A transaction without entries: its branches went to the AOR's
    // contacts, in order (push_lookup's first delivery adds no entries and
    // keeps no memo, see `adds_entries`; or the branches were not made by
    // push_lookup): derived here from each branch's Request-URI, and its
    // answer gives the entry's Reason below.
    if entries.is_empty() {
        for k in 0..inp.branches.len().min(MAX_ENTRIES) {
            if let Some(index) = root.child(u16::try_from(k + 1).unwrap_or(u16::MAX)) {
                entries.push(Entry {
                    index,
                    kind: Kind::Rc,
                    cause: None,
                    round: 0,
                    uri: Uri::Tx(k),
                });
            }
        }
    }
    let round = if inp.branches.is_empty() {
        0
    } else {
        entries
            .iter()
            .map(|e| e.round)
            .max()
            .map_or(1, |r| r.saturating_add(1))
    };
    let old = entries.len();
    let entry_of = |d: &Decision, entries: &[Entry], uri: &[u8]| {
        entries
            .iter()
            .take(old)
            .find(|e| inp.bytes(d, e.uri) == uri)
            .map(|e| e.index)
    };
    let first_failed = current(inp.branches).find(|b| b.status >= 300);
    let first_3xx = current(inp.branches).find(|b| followable_3xx(b.status));

    // Each branch's own entry (its position in `entries`).
    for j in 0..d.branches.len() {
        let Some(b) = d.branches.get(j) else {
            break;
        };
        let target: &[u8] = match &b.origin {
            Origin::AorOf(u) => u,
            _ => b.uri(),
        };
        let (mut parent, mut cause) = match reason {
            Reason::StoredForwarding => (
                root,
                Some(match inp.stored {
                    Some(ForwardingKind::Permanent) => 301,
                    _ => 302,
                }),
            ),
            Reason::Provisioned => match first_3xx {
                Some(s) => (entry_of(d, entries, s.uri).unwrap_or(root), Some(s.status)),
                None => (root, Some(480)),
            },
            Reason::Redirect => {
                let src = source_3xx(inp.branches, target).or(first_3xx);
                match src {
                    Some(s) => (entry_of(d, entries, s.uri).unwrap_or(root), Some(s.status)),
                    None => (root, None),
                }
            }
            Reason::PendingRedirect => {
                match origins.iter().find(|o| inp.bytes(d, o.uri) == target) {
                    Some(o) => (o.parent, Some(o.cause)),
                    None => (root, None),
                }
            }
            Reason::Failover => (root, first_failed.map(|s| s.status)),
            _ => (root, None),
        };
        if matches!(b.origin, Origin::AorOf(_)) {
            // The AOR's own entry (shared by its contacts in this round).
            let found = entries.iter().skip(old).position(|e| {
                matches!(e.uri, Uri::AorOf(_))
                    && inp.bytes(d, e.uri) == target
                    && e.index.parent() == Some(parent)
            });
            let aor = match found {
                Some(p) => Some(old + p),
                None => next_child(entries, &root, parent).map(|index| {
                    entries.push(Entry {
                        index,
                        kind: Kind::Mp,
                        cause,
                        round,
                        uri: Uri::AorOf(j),
                    });
                    entries.len() - 1
                }),
            };
            match aor.and_then(|a| entries.get(a)) {
                Some(a) => parent = a.index,
                None => {
                    own.push(None);
                    continue;
                }
            }
            cause = None;
        }
        let kind = match b.origin {
            Origin::Target => Kind::Mp,
            _ => Kind::Rc,
        };
        let mine = if entries.len() < MAX_ENTRIES {
            next_child(entries, &root, parent).map(|index| {
                entries.push(Entry {
                    index,
                    kind,
                    cause,
                    round,
                    uri: Uri::Branch(j),
                });
                entries.len() - 1
            })
        } else {
            None
        };
        own.push(mine);
    }

    let privacy = inp.privacy.is_some_and(privacy_history);
    for j in 0..d.branches.len() {
        let Some(mine) = own.get(j).copied().flatten().and_then(|m| entries.get(m)) else {
            continue;
        };
        let mine = *mine;
        let on_path = |e: &Entry| {
            e.index.is_ancestor_or_self(&mine.index)
                // An earlier sibling of an ancestor-or-self, tried in an
                // earlier round than it.
                || entries.iter().any(|a| {
                    a.index.is_ancestor_or_self(&mine.index)
                        && a.index.parent() == e.index.parent()
                        && e.round < a.round
                })
        };
        if inp.cfg.history_info {
            out.clear();
            if root_is_ours {
                out.push(b'<');
                out.extend_from_slice(inp.ruri);
                out.extend_from_slice(b">;index=");
                root.write(out);
            }
            for e in entries.iter().filter(|e| on_path(e)) {
                if !out.is_empty() {
                    out.extend_from_slice(b", ");
                }
                let uri = inp.bytes(d, e.uri);
                let status = inp
                    .branches
                    .iter()
                    .find(|b| b.uri == uri && b.status >= 300)
                    .map(|b| b.status);
                write_entry(out, uri, e, status, privacy);
            }
            let v = inp.host.buffer_with(out);
            if let Some(b) = d.branches.get_mut(j) {
                b.history_info = v;
            }
        }
        if inp.cfg.diversion {
            out.clear();
            // One per retarget on the branch's path (the entries with a
            // cause); entries are made in order, so the most recent
            // diversion is the last one, and goes first (RFC 5806).
            let chain = entries
                .iter()
                .rev()
                .filter(|e| e.cause.is_some() && on_path(e));
            let n = chain.clone().count();
            for (k, e) in chain.enumerate() {
                if k > 0 {
                    out.extend_from_slice(b", ");
                }
                // Diverted from the target it was retargeted from.
                let from = e
                    .index
                    .parent()
                    .and_then(|p| entries.iter().find(|x| x.index == p))
                    .map_or(inp.ruri, |x| inp.bytes(d, x.uri));
                out.push(b'<');
                out.extend_from_slice(strip_headers(from));
                out.extend_from_slice(b">;reason=");
                out.extend_from_slice(diversion_reason(e.cause.unwrap_or(480)).as_bytes());
                out.extend_from_slice(b";counter=");
                push_decimal(out, u32::try_from(n - k).unwrap_or(1));
            }
            let v = inp.host.buffer_with(out);
            if let Some(b) = d.branches.get_mut(j) {
                b.diversion = v;
            }
        }
    }

    // The memo: the engine's part (or "derived"), then ours.
    let mut memo = std::mem::take(&mut d.memo);
    if memo.is_empty() {
        memo.extend_from_slice(DERIVED);
    }
    let engine_part = memo.len();
    for e in entries.iter().take(MAX_ENTRIES) {
        let uri = inp.bytes(d, e.uri);
        if !memo_safe(uri) {
            continue;
        }
        memo.extend_from_slice(b"h ");
        e.index.write(&mut memo);
        memo.extend_from_slice(match e.kind {
            Kind::Rc => b" r ",
            Kind::Mp => b" m ",
        });
        match e.cause {
            Some(c) => push_decimal(&mut memo, u32::from(c)),
            None => memo.push(b'-'),
        }
        memo.push(b' ');
        push_decimal(&mut memo, u32::from(e.round));
        memo.push(b' ');
        memo.extend_from_slice(uri);
        memo.push(b'\n');
    }
    let mut n_origins = 0;
    for o in origins.iter() {
        let uri = inp.bytes(d, o.uri);
        if n_origins >= MAX_ORIGINS || !memo_safe(uri) {
            continue;
        }
        n_origins += 1;
        memo.extend_from_slice(b"p ");
        o.parent.write(&mut memo);
        memo.push(b' ');
        push_decimal(&mut memo, u32::from(o.cause));
        memo.push(b' ');
        memo.extend_from_slice(uri);
        memo.push(b'\n');
    }
    // This round's 3xx Contacts kept for later (the engine's pending
    // lines, `q uri`, after its first line): a later round may take them
    // (tier 2) and must know where they came from. A followed 302 leaves
    // none: nothing is read.
    if reason == Reason::Redirect {
        let first = memo
            .iter()
            .position(|&c| c == b'\n')
            .map_or(engine_part, |n| n + 1);
        let mut at = first.min(engine_part);
        while at < engine_part {
            let end = memo
                .get(at..engine_part)
                .and_then(|r| r.iter().position(|&c| c == b'\n'))
                .map_or(engine_part, |n| at + n);
            let line = (at, end);
            at = end + 1;
            let Some(sp) = memo
                .get(line.0..line.1)
                .and_then(|l| l.iter().position(|&c| c == b' '))
            else {
                continue;
            };
            let uri = (line.0 + sp + 1, line.1);
            let known = {
                let u = memo.get(uri.0..uri.1).unwrap_or(&[]);
                origins.iter().any(|o| inp.bytes(d, o.uri) == u)
            };
            if known || n_origins >= MAX_ORIGINS {
                continue;
            }
            let src = {
                let u = memo.get(uri.0..uri.1).unwrap_or(&[]);
                source_3xx(inp.branches, u)
            };
            let Some(s) = src else {
                continue;
            };
            let Some(parent) = entry_of(d, entries, s.uri) else {
                continue;
            };
            n_origins += 1;
            memo.extend_from_slice(b"p ");
            parent.write(&mut memo);
            memo.push(b' ');
            push_decimal(&mut memo, u32::from(s.status));
            memo.push(b' ');
            memo.extend_from_within(uri.0..uri.1);
            memo.push(b'\n');
        }
    }
    d.memo = memo;
}

/// Whether a URI can be a memo line's last field (no space, no line
/// break, no other control: no SIP URI has one).
fn memo_safe(uri: &[u8]) -> bool {
    // Eight bytes at a time: a byte below 0x21 in `x` sets its high bit
    // in `(x - 0x21..) & !x & 0x80..` (exact for "is there one").
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let below = |x: u64| x.wrapping_sub(LO.wrapping_mul(0x21)) & !x & HI != 0;
    let mut words = uri.chunks_exact(8);
    for w in &mut words {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(w).unwrap_or([0; 8]));
        if below(x) {
            return false;
        }
    }
    !uri.is_empty() && words.remainder().iter().all(|&c| c > b' ')
}

/// The next free child index of `parent` among `entries` (and the root).
fn next_child(entries: &[Entry], root: &Index, parent: Index) -> Option<Index> {
    let n = entries
        .iter()
        .map(|e| e.index)
        .chain(std::iter::once(*root))
        .filter(|i| i.parent() == Some(parent))
        .filter_map(|i| i.parts().last().copied())
        .max()
        .unwrap_or(0);
    parent.child(n.checked_add(1)?)
}

fn parse_uri(u: &[u8]) -> Option<crate::uri::SipUri<'_>> {
    crate::uri::parse(u).ok()
}

/// The branch of the current round whose 3xx named `target`: the one
/// 3xx of the round (the usual case: no reply is parsed again), else the
/// first whose Contacts name it.
fn source_3xx<'b>(branches: &'b [Branch<'b>], target: &[u8]) -> Option<&'b Branch<'b>> {
    let mut redirects = current(branches).filter(|s| followable_3xx(s.status));
    let first = redirects.next()?;
    if redirects.next().is_none() {
        return Some(first);
    }
    current(branches)
        .filter(|s| followable_3xx(s.status))
        .find(|s| names_contact(s, target))
}

/// Whether the 3xx of branch `s` names `target` as a Contact.
fn names_contact(s: &Branch<'_>, target: &[u8]) -> bool {
    s.reply
        .and_then(|r| parser::parse_response(r).ok())
        .is_some_and(|resp| resp.contacts().flatten().any(|c| c.uri == target))
}

/// The URI without its `?headers` part.
fn strip_headers(uri: &[u8]) -> &[u8] {
    match chars::find_byte(uri, b'?') {
        Some(q) => uri.get(..q).unwrap_or(uri),
        None => uri,
    }
}

/// One entry: `<uri;cause=C?Reason=...&Privacy=history>;index=I;rc=P`.
fn write_entry(out: &mut Vec<u8>, uri: &[u8], e: &Entry, status: Option<u16>, privacy: bool) {
    let base = strip_headers(uri);
    let headers = uri.get(base.len() + 1..).filter(|h| !h.is_empty());
    out.push(b'<');
    out.extend_from_slice(base);
    if let Some(c) = e.cause {
        out.extend_from_slice(b";cause=");
        push_decimal(out, u32::from(c));
    }
    let mut sep = b'?';
    if let Some(h) = headers {
        out.push(sep);
        out.extend_from_slice(h);
        sep = b'&';
    }
    if let Some(s) = status {
        out.push(sep);
        out.extend_from_slice(b"Reason=SIP%3Bcause%3D");
        push_decimal(out, u32::from(s));
        sep = b'&';
    }
    if privacy {
        out.push(sep);
        out.extend_from_slice(b"Privacy=history");
    }
    out.extend_from_slice(b">;index=");
    e.index.write(out);
    if let Some(p) = e.index.parent() {
        out.extend_from_slice(match e.kind {
            Kind::Rc => b";rc=",
            Kind::Mp => b";mp=",
        });
        p.write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::memo_safe;

    #[test]
    fn memo_safe_is_the_bytewise_rule_at_every_length_and_position() {
        let naive = |u: &[u8]| !u.is_empty() && u.iter().all(|&c| c > b' ');
        let mut cases: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=24 {
            let ok: Vec<u8> = (0..len).map(|k| b'!' + (k % 90) as u8).collect();
            cases.push(ok.clone());
            for at in 0..len {
                for bad in [b' ', b'\n', b'\r', b'\t', 0, 0x20, 0x21, 0x7f, 0x80, 0xff] {
                    let mut v = ok.clone();
                    v[at] = bad;
                    cases.push(v);
                }
            }
        }
        for c in &cases {
            assert_eq!(memo_safe(c), naive(c), "{c:?}");
        }
    }
}
