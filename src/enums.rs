//! Number ↔ enum tables derived from the enums themselves (as rustls-ffi's
//! `ResultFromU32!`): a C caller hands numbers, and a new variant can never
//! map to "unknown".

/// For a `#[repr(u32)]` enum whose variants are listed once: `ALL` (every
/// variant, in order) and `TryFrom<u32>`. The exhaustive `match` in the
/// generated `_every_variant_listed` fails to compile when a variant of the
/// enum is missing from the list.
macro_rules! numbered {
    ($enum:ident { $($variant:ident),+ $(,)? }) => {
        impl $enum {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$enum] = &[$($enum::$variant),+];
        }

        impl TryFrom<u32> for $enum {
            type Error = u32;
            fn try_from(n: u32) -> Result<Self, u32> {
                Self::ALL.iter().copied().find(|v| *v as u32 == n).ok_or(n)
            }
        }

        const _: () = {
            #[allow(dead_code)]
            fn _every_variant_listed(v: $enum) {
                match v {
                    $($enum::$variant => {}),+
                }
            }
        };
    };
}

pub(crate) use numbered;
