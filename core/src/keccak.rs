//! Keccak-256 of many short inputs (one sponge block each: at most 135 bytes), four at a
//! time where the CPU has AVX2: the Merkle leaves of an append and the inner nodes of a round
//! are independent hashes of 32 to 96 bytes, and one AVX2 permutation does four of them for
//! little more than the instructions of one.
//!
//! The result is exactly `keccak256` (checked against alloy's in the tests); without AVX2,
//! or on another architecture, each input goes through alloy's `keccak256`.

use alloy_primitives::keccak256;

/// The sponge's rate in bytes: inputs up to `RATE - 1` bytes fit one padded block.
const RATE: usize = 136;

/// `keccak256` of every input (each at most 135 bytes), in order, appended to `out`.
pub(crate) fn keccak256_each<const N: usize>(inputs: &[[u8; N]], out: &mut Vec<[u8; 32]>) {
    const { assert!(N < RATE, "one sponge block per input") };
    out.reserve(inputs.len());
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        for four in inputs.chunks(4) {
            let mut blocks = [[0u8; RATE]; 4];
            for (block, input) in blocks.iter_mut().zip(four) {
                block[..N].copy_from_slice(input);
            }
            // SAFETY: the CPU has AVX2 (detected just above).
            let digests = unsafe { x4::keccak256_padded(&mut blocks, N) };
            out.extend_from_slice(&digests[..four.len()]);
        }
        return;
    }
    out.extend(inputs.iter().map(|i| keccak256(i).0));
}

#[cfg(target_arch = "x86_64")]
mod x4 {
    use std::arch::x86_64::{
        __m256i, _mm256_andnot_si256, _mm256_extract_epi64, _mm256_or_si256, _mm256_set_epi64x, _mm256_set1_epi64x,
        _mm256_setzero_si256, _mm256_slli_epi64, _mm256_srli_epi64, _mm256_xor_si256,
    };

    use super::RATE;

    const ROUND_CONSTANTS: [u64; 24] = [
        0x0000_0000_0000_0001,
        0x0000_0000_0000_8082,
        0x8000_0000_0000_808A,
        0x8000_0000_8000_8000,
        0x0000_0000_0000_808B,
        0x0000_0000_8000_0001,
        0x8000_0000_8000_8081,
        0x8000_0000_0000_8009,
        0x0000_0000_0000_008A,
        0x0000_0000_0000_0088,
        0x0000_0000_8000_8009,
        0x0000_0000_8000_000A,
        0x0000_0000_8000_808B,
        0x8000_0000_0000_008B,
        0x8000_0000_0000_8089,
        0x8000_0000_0000_8003,
        0x8000_0000_0000_8002,
        0x8000_0000_0000_0080,
        0x0000_0000_0000_800A,
        0x8000_0000_8000_000A,
        0x8000_0000_8000_8081,
        0x8000_0000_0000_8080,
        0x0000_0000_8000_0001,
        0x8000_0000_8000_8008,
    ];

    /// Rotates each 64-bit lane left by a literal amount.
    macro_rules! rol {
        ($x:expr, $n:literal) => {
            _mm256_or_si256(_mm256_slli_epi64::<$n>($x), _mm256_srli_epi64::<{ 64 - $n }>($x))
        };
    }

    /// Keccak-f[1600] on four states at once; lane `i` of the state (`x + 5y`) is `a[i]`.
    #[target_feature(enable = "avx2")]
    fn permute(a: &mut [__m256i; 25]) {
        for rc in ROUND_CONSTANTS {
            // θ
            let mut c = [_mm256_setzero_si256(); 5];
            for (x, c) in c.iter_mut().enumerate() {
                *c = _mm256_xor_si256(
                    _mm256_xor_si256(_mm256_xor_si256(a[x], a[x + 5]), _mm256_xor_si256(a[x + 10], a[x + 15])),
                    a[x + 20],
                );
            }
            for x in 0..5 {
                let d = _mm256_xor_si256(c[(x + 4) % 5], rol!(c[(x + 1) % 5], 1));
                for y in 0..5 {
                    a[x + 5 * y] = _mm256_xor_si256(a[x + 5 * y], d);
                }
            }
            // ρ and π: lane x + 5y, rotated, moves to y + 5((2x + 3y) mod 5).
            let b = [
                a[0],
                rol!(a[6], 44),
                rol!(a[12], 43),
                rol!(a[18], 21),
                rol!(a[24], 14),
                rol!(a[3], 28),
                rol!(a[9], 20),
                rol!(a[10], 3),
                rol!(a[16], 45),
                rol!(a[22], 61),
                rol!(a[1], 1),
                rol!(a[7], 6),
                rol!(a[13], 25),
                rol!(a[19], 8),
                rol!(a[20], 18),
                rol!(a[4], 27),
                rol!(a[5], 36),
                rol!(a[11], 10),
                rol!(a[17], 15),
                rol!(a[23], 56),
                rol!(a[2], 62),
                rol!(a[8], 55),
                rol!(a[14], 39),
                rol!(a[15], 41),
                rol!(a[21], 2),
            ];
            // χ
            for y in 0..5 {
                for x in 0..5 {
                    let (b1, b2) = (b[(x + 1) % 5 + 5 * y], b[(x + 2) % 5 + 5 * y]);
                    a[x + 5 * y] = _mm256_xor_si256(b[x + 5 * y], _mm256_andnot_si256(b1, b2));
                }
            }
            // ι
            a[0] = _mm256_xor_si256(a[0], _mm256_set1_epi64x(rc as i64));
        }
    }

    /// The keccak256 digests of four messages of `len` bytes, each at the start of its block
    /// (zeros after it), padded here.
    #[target_feature(enable = "avx2")]
    pub(super) fn keccak256_padded(blocks: &mut [[u8; RATE]; 4], len: usize) -> [[u8; 32]; 4] {
        for block in blocks.iter_mut() {
            block[len] ^= 0x01;
            block[RATE - 1] ^= 0x80;
        }
        let word = |i: usize, j: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&blocks[i][8 * j..8 * j + 8]);
            u64::from_le_bytes(w) as i64
        };
        let mut a = [_mm256_setzero_si256(); 25];
        for (j, lane) in a.iter_mut().enumerate().take(RATE / 8) {
            *lane = _mm256_set_epi64x(word(3, j), word(2, j), word(1, j), word(0, j));
        }
        permute(&mut a);
        let mut out = [[0u8; 32]; 4];
        for (j, lane) in a.iter().enumerate().take(4) {
            let words = [
                _mm256_extract_epi64::<0>(*lane),
                _mm256_extract_epi64::<1>(*lane),
                _mm256_extract_epi64::<2>(*lane),
                _mm256_extract_epi64::<3>(*lane),
            ];
            for (digest, w) in out.iter_mut().zip(words) {
                digest[8 * j..8 * j + 8].copy_from_slice(&(w as u64).to_le_bytes());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn each<const N: usize>(inputs: &[[u8; N]]) -> Vec<[u8; 32]> {
        let mut out = Vec::new();
        keccak256_each(inputs, &mut out);
        out
    }

    #[test]
    fn known_digests() {
        // keccak256(""), and of the 32 zero bytes (both well known).
        assert_eq!(
            each::<0>(&[[]]),
            [alloy_primitives::hex!("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")]
        );
        assert_eq!(
            each(&[[0u8; 32]]),
            [alloy_primitives::hex!("290decd9548b62a8d60345a988386fc84ba6bc95484008f6362f93160ef3e563")]
        );
    }

    proptest! {
        #[test]
        fn equals_keccak256_for_every_count_and_length(
            seeds in proptest::collection::vec(any::<u64>(), 0..11),
        ) {
            fn check<const N: usize>(seeds: &[u64]) -> Result<(), TestCaseError> {
                let inputs: Vec<[u8; N]> = seeds
                    .iter()
                    .map(|s| std::array::from_fn(|i| (s.rotate_left(i as u32 % 64) as u8) ^ (i as u8)))
                    .collect();
                let expected: Vec<[u8; 32]> = inputs.iter().map(|i| keccak256(i).0).collect();
                prop_assert_eq!(each(&inputs), expected);
                Ok(())
            }
            check::<1>(&seeds)?;
            check::<32>(&seeds)?;
            check::<64>(&seeds)?;
            check::<96>(&seeds)?;
            check::<127>(&seeds)?;
            check::<135>(&seeds)?;
        }
    }
}
