//! One non-cryptographic hash for the keys the handlers derive from names.

/// FNV-1a, 64 bits, of `bytes`: short, stable across processes, releases and platforms (it
/// depends on nothing but the bytes), and cheap. The handlers use it for keys derived from names
/// (a reservation's SSM name, a spread seed, a PostgreSQL advisory-lock key); a changed
/// algorithm would change those keys, so this one stays.
///
/// Not a defence against anyone choosing the input: collisions are easy to make on purpose.
///
/// ```
/// assert_eq!(cfn_custom_resource::fnv1a_64(*b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(cfn_custom_resource::fnv1a_64("a".bytes()), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn fnv1a_64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.into_iter().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

#[cfg(test)]
mod tests {
    use super::fnv1a_64;

    #[test]
    fn matches_the_published_test_vectors() {
        // From the FNV reference (isthe.com/chongo/tech/comp/fnv), FNV-1a 64-bit.
        assert_eq!(fnv1a_64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(*b"foobar"), 0x8594_4171_f739_67e8);
    }
}
