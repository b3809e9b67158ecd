//! Password generation: uniform, unbiased sampling over an alphabet of printable ASCII.

use cfn_custom_resource::Secret;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use rand::{CryptoRng, TryRng as _};

use crate::error::PasswordError;

/// The characters RDS rejects in a master password (`/`, `@`, `"`), plus `'` and `\` (which
/// break shell and SQL quoting) and space: the default exclusions.
pub const DEFAULT_EXCLUDE: &str = "/@\"'\\ ";

/// What a generated password looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Number of characters.
    pub length: usize,
    /// Characters never used. The alphabet is printable ASCII (space to `~`) minus these;
    /// characters outside printable ASCII here are ignored.
    pub exclude: String,
    /// Use each included character class (lower case, upper case, digit, punctuation) at least
    /// once. A class whose characters are all excluded is not required.
    pub require_each_class: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self {
            length: 32,
            exclude: DEFAULT_EXCLUDE.to_string(),
            require_each_class: true,
        }
    }
}

/// A character class a policy can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CharClass {
    /// `a` to `z`.
    Lower,
    /// `A` to `Z`.
    Upper,
    /// `0` to `9`.
    Digit,
    /// Every other printable ASCII character, space included.
    Punctuation,
}

impl CharClass {
    /// Every class, in the order [`CharClass::of`] tests them.
    pub const ALL: [CharClass; 4] = [Self::Lower, Self::Upper, Self::Digit, Self::Punctuation];

    /// The class of a printable ASCII byte (space counts as punctuation).
    pub fn of(byte: u8) -> Self {
        match byte {
            b'a'..=b'z' => Self::Lower,
            b'A'..=b'Z' => Self::Upper,
            b'0'..=b'9' => Self::Digit,
            _ => Self::Punctuation,
        }
    }
}

impl PasswordPolicy {
    /// The characters a password may use, in ASCII order.
    pub fn alphabet(&self) -> Vec<u8> {
        (b' '..=b'~')
            .filter(|&b| !self.exclude.as_bytes().contains(&b))
            .collect()
    }

    /// The classes that must each appear at least once: those with a character in the alphabet,
    /// when `require_each_class` is set.
    pub fn required_classes(&self) -> Vec<CharClass> {
        if !self.require_each_class {
            return Vec::new();
        }
        let alphabet = self.alphabet();
        CharClass::ALL
            .into_iter()
            .filter(|class| alphabet.iter().any(|&b| CharClass::of(b) == *class))
            .collect()
    }

    /// Checks that a password can be generated under this policy.
    pub fn validate(&self) -> Result<(), PasswordError> {
        if self.length == 0 {
            return Err(PasswordError::ZeroLength);
        }
        if self.alphabet().is_empty() {
            return Err(PasswordError::EmptyAlphabet);
        }
        let classes = self.required_classes().len();
        if self.length < classes {
            return Err(PasswordError::TooShortForClasses {
                length: self.length,
                classes,
            });
        }
        Ok(())
    }

    /// True when `password` could have come from this policy: the right length, only alphabet
    /// characters, and every required class present. Never reveals which check failed, so the
    /// answer can be logged.
    pub fn accepts(&self, password: &str) -> bool {
        let alphabet = self.alphabet();
        let bytes = password.as_bytes();
        bytes.len() == self.length
            && bytes.iter().all(|b| alphabet.contains(b))
            && self
                .required_classes()
                .iter()
                .all(|class| bytes.iter().any(|&b| CharClass::of(b) == *class))
    }
}

/// A uniformly distributed index in `0..n` by rejection sampling (no modulo bias).
fn uniform_index<R: CryptoRng + ?Sized>(rng: &mut R, n: usize) -> usize {
    assert!(n > 0 && n <= u32::MAX as usize, "index range 1..=u32::MAX");
    let n = n as u64;
    // The largest multiple of n not above 2^32: draws at or beyond it are rejected.
    let zone = (1u64 << 32) / n * n;
    loop {
        let draw = u64::from(rng.next_u32());
        if draw < zone {
            return (draw % n) as usize;
        }
    }
}

/// Generates a password under `policy` from `rng`.
///
/// Every character is drawn uniformly from the policy's alphabet. With `require_each_class`,
/// one character of each required class is drawn uniformly from that class, the rest from the
/// whole alphabet, and the result is shuffled (Fisher–Yates), so the required characters land
/// at random positions.
pub fn generate<R: CryptoRng + ?Sized>(
    policy: &PasswordPolicy,
    rng: &mut R,
) -> Result<Secret<String>, PasswordError> {
    policy.validate()?;
    let alphabet = policy.alphabet();
    let mut bytes = Vec::with_capacity(policy.length);
    for class in policy.required_classes() {
        let members: Vec<u8> = alphabet
            .iter()
            .copied()
            .filter(|&b| CharClass::of(b) == class)
            .collect();
        bytes.push(members[uniform_index(rng, members.len())]);
    }
    while bytes.len() < policy.length {
        bytes.push(alphabet[uniform_index(rng, alphabet.len())]);
    }
    for i in (1..bytes.len()).rev() {
        let j = uniform_index(rng, i + 1);
        bytes.swap(i, j);
    }
    let password = String::from_utf8(bytes).expect("printable ASCII is UTF-8");
    Ok(Secret::new(password))
}

/// [`generate`] from the operating system's CSPRNG.
pub fn generate_os(policy: &PasswordPolicy) -> Result<Secret<String>, PasswordError> {
    // Probe once so an unavailable OS generator is an error rather than a panic.
    SysRng.try_next_u32().map_err(PasswordError::Rng)?;
    generate(policy, &mut UnwrapErr(SysRng))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn default_policy_matches_rds_rules() {
        let policy = PasswordPolicy::default();
        let alphabet = policy.alphabet();
        assert_eq!(alphabet.len(), 95 - 6);
        for forbidden in DEFAULT_EXCLUDE.bytes() {
            assert!(!alphabet.contains(&forbidden), "{}", forbidden as char);
        }
        assert_eq!(policy.required_classes(), CharClass::ALL.to_vec());
        for _ in 0..200 {
            let password = generate_os(&policy).unwrap();
            assert!(policy.accepts(password.expose()));
        }
    }

    #[test]
    fn validation_errors() {
        let short = PasswordPolicy {
            length: 3,
            ..Default::default()
        };
        assert_eq!(
            short.validate(),
            Err(PasswordError::TooShortForClasses {
                length: 3,
                classes: 4
            })
        );
        let all: String = (b' '..=b'~').map(char::from).collect();
        let empty = PasswordPolicy {
            exclude: all,
            ..Default::default()
        };
        assert_eq!(empty.validate(), Err(PasswordError::EmptyAlphabet));
        let zero = PasswordPolicy {
            length: 0,
            ..Default::default()
        };
        assert_eq!(zero.validate(), Err(PasswordError::ZeroLength));
        // Only digits left: one class required, a one-character password is fine.
        let digits_only: String = (b' '..=b'~')
            .filter(|b| !b.is_ascii_digit())
            .map(char::from)
            .collect();
        let digits = PasswordPolicy {
            length: 1,
            exclude: digits_only,
            require_each_class: true,
        };
        assert_eq!(digits.required_classes(), vec![CharClass::Digit]);
        assert!(generate_os(&digits).unwrap().expose().as_bytes()[0].is_ascii_digit());
    }

    #[test]
    fn exclusions_and_classes_are_honoured() {
        let policy = PasswordPolicy {
            length: 8,
            exclude: "abcXYZ012!#$ /@\"'\\".into(),
            require_each_class: true,
        };
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..2000 {
            let password = generate(&policy, &mut rng).unwrap();
            let text = password.expose();
            assert_eq!(text.len(), 8);
            assert!(!text.chars().any(|c| policy.exclude.contains(c)));
            assert!(policy.accepts(text));
        }
    }

    /// Chi-squared goodness of fit of character frequencies against the uniform distribution
    /// over the default alphabet (89 characters, 88 degrees of freedom), over 1,000,000
    /// characters. The bound: the statistic must stay below 135.98, the critical value at
    /// significance 0.001 for 88 degrees of freedom. A sampler that over-weights any one
    /// character by 10 % or more (e.g. `byte % 89` over a random byte, which makes the first
    /// 78 characters 1.5 times as likely as the rest) exceeds it. The seed is fixed, so the
    /// test is deterministic.
    #[test]
    fn character_frequencies_are_uniform() {
        const CRITICAL_0_001_DF_88: f64 = 135.98;
        let policy = PasswordPolicy {
            length: 40,
            require_each_class: false,
            ..Default::default()
        };
        let alphabet = policy.alphabet();
        assert_eq!(alphabet.len(), 89);
        let mut rng = StdRng::seed_from_u64(0x5eed_2026);
        let mut counts = [0u64; 128];
        let passwords = 25_000;
        for _ in 0..passwords {
            for b in generate(&policy, &mut rng).unwrap().expose().bytes() {
                counts[b as usize] += 1;
            }
        }
        let total = (passwords * policy.length) as f64;
        let expected = total / alphabet.len() as f64;
        let chi_squared: f64 = alphabet
            .iter()
            .map(|&b| {
                let diff = counts[b as usize] as f64 - expected;
                diff * diff / expected
            })
            .sum();
        let outside: u64 = (0..128)
            .filter(|b| !alphabet.contains(&(*b as u8)))
            .map(|b| counts[b])
            .sum();
        assert_eq!(outside, 0, "characters outside the alphabet were generated");
        assert!(
            chi_squared < CRITICAL_0_001_DF_88,
            "chi-squared {chi_squared:.2} over {total} characters exceeds {CRITICAL_0_001_DF_88}"
        );
    }

    /// With required classes, the forced characters must not sit at fixed positions. A
    /// four-character alphabet of one character per class and length 4 makes every password a
    /// permutation of "aA1!"; each character must then be equally likely at each position.
    /// Chi-squared over the 4 x 4 position table (each row sums to the sample size, so
    /// 4 * 3 = 12 degrees of freedom): critical value at 0.001 is 32.91.
    #[test]
    fn required_characters_land_at_uniform_positions() {
        const CRITICAL_0_001_DF_12: f64 = 32.91;
        let keep = b"aA1!";
        let exclude: String = (b' '..=b'~')
            .filter(|b| !keep.contains(b))
            .map(char::from)
            .collect();
        let policy = PasswordPolicy {
            length: 4,
            exclude,
            require_each_class: true,
        };
        let mut rng = StdRng::seed_from_u64(42);
        let samples = 40_000u64;
        let mut table = [[0u64; 4]; 4];
        for _ in 0..samples {
            let password = generate(&policy, &mut rng).unwrap();
            let bytes = password.expose().as_bytes();
            let mut sorted = bytes.to_vec();
            sorted.sort_unstable();
            assert_eq!(sorted, b"!1Aa", "each class exactly once");
            for (position, byte) in bytes.iter().enumerate() {
                let row = keep.iter().position(|k| k == byte).unwrap();
                table[row][position] += 1;
            }
        }
        let expected = samples as f64 / 4.0;
        let chi_squared: f64 = table
            .iter()
            .flatten()
            .map(|&count| (count as f64 - expected).powi(2) / expected)
            .sum();
        assert!(
            chi_squared < CRITICAL_0_001_DF_12,
            "chi-squared {chi_squared:.2}, table {table:?}"
        );
    }

    #[test]
    fn uniform_index_covers_the_range_without_bias_at_the_edges() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut seen = [0u32; 3];
        for _ in 0..30_000 {
            seen[uniform_index(&mut rng, 3)] += 1;
        }
        assert!(seen.iter().all(|&c| (9_400..10_600).contains(&c)), "{seen:?}");
        assert_eq!(uniform_index(&mut rng, 1), 0);
    }
}
