//! The committed C header must be exactly what cbindgen generates from
//! `src/ffi.rs`: the module and outside users compile against it.

#[test]
fn committed_header_is_not_stale() {
    let fresh = include_str!(concat!(env!("OUT_DIR"), "/push_redirect.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/push_redirect.h");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    if committed != fresh {
        let first_diff = committed
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(fresh.lines().count()))
            + 1;
        panic!(
            "include/push_redirect.h is stale or edited (first difference at line {first_diff}); \
             regenerate it with `make header` and commit it"
        );
    }
}
