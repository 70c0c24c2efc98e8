//! Keccak-256 of many short inputs (one sponge block each: at most 135 bytes), four at a
//! time in SIMD registers: the Merkle leaves of an append and the inner nodes of a round are
//! independent hashes of 32 to 96 bytes. With AVX-512 (F and VL: one-instruction rotations
//! and three-input logic) four digests cost about a fifth of four scalar ones, with AVX2
//! about two fifths (`cargo bench --bench proofs -- leaves`); on other CPUs each input goes
//! through alloy's `keccak256`.
//!
//! The result is exactly `keccak256` (checked against alloy's in the tests).

use alloy_primitives::keccak256;

/// The sponge's rate in bytes: inputs up to `RATE - 1` bytes fit one padded block.
const RATE: usize = 136;

/// `keccak256` of every input (each at most 135 bytes), in order, appended to `out`.
pub(crate) fn keccak256_each<const N: usize>(inputs: &[[u8; N]], out: &mut Vec<[u8; 32]>) {
    const { assert!(N < RATE, "one sponge block per input") };
    out.reserve(inputs.len());
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = x4::Simd::detect() {
        for four in inputs.chunks(4) {
            let mut blocks = [[0u8; RATE]; 4];
            for (block, input) in blocks.iter_mut().zip(four) {
                block[..N].copy_from_slice(input);
            }
            out.extend_from_slice(&simd.keccak256_padded(&mut blocks, N)[..four.len()]);
        }
        return;
    }
    out.extend(inputs.iter().map(|i| keccak256(i).0));
}

#[cfg(target_arch = "x86_64")]
mod x4 {
    use std::arch::x86_64::{
        __m256i, _mm256_andnot_si256, _mm256_extract_epi64, _mm256_or_si256, _mm256_rol_epi64, _mm256_set_epi64x,
        _mm256_set1_epi64x, _mm256_setzero_si256, _mm256_slli_epi64, _mm256_srli_epi64, _mm256_ternarylogic_epi64,
        _mm256_xor_si256,
    };

    use super::RATE;

    /// The four-way permutation this CPU runs. Only [`Simd::detect`] makes one, so holding
    /// one proves the CPU has its features.
    #[derive(Clone, Copy)]
    pub(super) struct Simd(Features);

    #[derive(Clone, Copy)]
    enum Features {
        Avx512,
        Avx2,
    }

    impl Simd {
        /// The best this CPU has, if any.
        pub(super) fn detect() -> Option<Self> {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512vl") {
                Some(Self(Features::Avx512))
            } else if has!("avx2") {
                Some(Self(Features::Avx2))
            } else {
                None
            }
        }

        /// The keccak256 digests of four messages of `len` bytes, each at the start of its
        /// block (zeros after it), padded here.
        pub(super) fn keccak256_padded(self, blocks: &mut [[u8; RATE]; 4], len: usize) -> [[u8; 32]; 4] {
            for block in blocks.iter_mut() {
                block[len] ^= 0x01;
                block[RATE - 1] ^= 0x80;
            }
            // SAFETY: `detect` found the features each function is compiled for.
            unsafe {
                match self.0 {
                    Features::Avx512 => avx512::digests(blocks),
                    Features::Avx2 => avx2::digests(blocks),
                }
            }
        }
    }

    /// Lane word `j` of the four blocks, as the four 64-bit lanes of a register.
    fn words(blocks: &[[u8; RATE]; 4], j: usize) -> [i64; 4] {
        std::array::from_fn(|i| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&blocks[i][8 * j..8 * j + 8]);
            u64::from_le_bytes(w) as i64
        })
    }

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

    macro_rules! rol_avx512 {
        ($x:expr, $n:literal) => {
            _mm256_rol_epi64::<$n>($x)
        };
    }
    macro_rules! xor3_avx512 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_ternarylogic_epi64::<0x96>($a, $b, $c)
        };
    }
    /// `a ^ (!b & c)`: truth table 0xD2.
    macro_rules! chi_avx512 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_ternarylogic_epi64::<0xD2>($a, $b, $c)
        };
    }
    macro_rules! rol_avx2 {
        ($x:expr, $n:literal) => {
            _mm256_or_si256(_mm256_slli_epi64::<$n>($x), _mm256_srli_epi64::<{ 64 - $n }>($x))
        };
    }
    macro_rules! xor3_avx2 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_xor_si256(_mm256_xor_si256($a, $b), $c)
        };
    }
    macro_rules! chi_avx2 {
        ($a:expr, $b:expr, $c:expr) => {
            _mm256_xor_si256($a, _mm256_andnot_si256($b, $c))
        };
    }

    /// Keccak-f[1600] on four states (lane `x + 5y` of each state in `a[x + 5y]`), written
    /// once and compiled for each instruction set with its rotation, three-way xor and χ.
    macro_rules! backend {
        ($name:ident, $features:literal, $rol:ident, $xor3:ident, $chi:ident) => {
            mod $name {
                use super::*;

                #[target_feature(enable = $features)]
                pub(super) fn digests(blocks: &[[u8; RATE]; 4]) -> [[u8; 32]; 4] {
                    let mut a = [_mm256_setzero_si256(); 25];
                    for (j, lane) in a.iter_mut().enumerate().take(RATE / 8) {
                        let [w0, w1, w2, w3] = words(blocks, j);
                        *lane = _mm256_set_epi64x(w3, w2, w1, w0);
                    }
                    permute(&mut a);
                    let mut out = [[0u8; 32]; 4];
                    for (j, lane) in a.iter().enumerate().take(4) {
                        let w = [
                            _mm256_extract_epi64::<0>(*lane),
                            _mm256_extract_epi64::<1>(*lane),
                            _mm256_extract_epi64::<2>(*lane),
                            _mm256_extract_epi64::<3>(*lane),
                        ];
                        for (digest, w) in out.iter_mut().zip(w) {
                            digest[8 * j..8 * j + 8].copy_from_slice(&(w as u64).to_le_bytes());
                        }
                    }
                    out
                }

                #[target_feature(enable = $features)]
                fn permute(a: &mut [__m256i; 25]) {
                    for rc in ROUND_CONSTANTS {
                        // θ
                        let mut c = [_mm256_setzero_si256(); 5];
                        for (x, c) in c.iter_mut().enumerate() {
                            *c = $xor3!($xor3!(a[x], a[x + 5], a[x + 10]), a[x + 15], a[x + 20]);
                        }
                        for x in 0..5 {
                            let d = _mm256_xor_si256(c[(x + 4) % 5], $rol!(c[(x + 1) % 5], 1));
                            for y in 0..5 {
                                a[x + 5 * y] = _mm256_xor_si256(a[x + 5 * y], d);
                            }
                        }
                        // ρ and π: lane x + 5y, rotated, moves to y + 5((2x + 3y) mod 5).
                        let b = [
                            a[0],
                            $rol!(a[6], 44),
                            $rol!(a[12], 43),
                            $rol!(a[18], 21),
                            $rol!(a[24], 14),
                            $rol!(a[3], 28),
                            $rol!(a[9], 20),
                            $rol!(a[10], 3),
                            $rol!(a[16], 45),
                            $rol!(a[22], 61),
                            $rol!(a[1], 1),
                            $rol!(a[7], 6),
                            $rol!(a[13], 25),
                            $rol!(a[19], 8),
                            $rol!(a[20], 18),
                            $rol!(a[4], 27),
                            $rol!(a[5], 36),
                            $rol!(a[11], 10),
                            $rol!(a[17], 15),
                            $rol!(a[23], 56),
                            $rol!(a[2], 62),
                            $rol!(a[8], 55),
                            $rol!(a[14], 39),
                            $rol!(a[15], 41),
                            $rol!(a[21], 2),
                        ];
                        // χ
                        for y in 0..5 {
                            for x in 0..5 {
                                let (b1, b2) = (b[(x + 1) % 5 + 5 * y], b[(x + 2) % 5 + 5 * y]);
                                a[x + 5 * y] = $chi!(b[x + 5 * y], b1, b2);
                            }
                        }
                        // ι
                        a[0] = _mm256_xor_si256(a[0], _mm256_set1_epi64x(rc as i64));
                    }
                }
            }
        };
    }

    backend!(avx512, "avx512f,avx512vl", rol_avx512, xor3_avx512, chi_avx512);
    backend!(avx2, "avx2", rol_avx2, xor3_avx2, chi_avx2);

    #[cfg(test)]
    mod tests {
        use super::*;

        /// Each backend, not only the one `detect` picks, on every length class.
        #[test]
        fn every_backend_this_cpu_has_equals_keccak256() {
            use std::arch::is_x86_feature_detected as has;
            let mut backends = Vec::new();
            if has!("avx512f") && has!("avx512vl") {
                backends.push(Simd(Features::Avx512));
            }
            if has!("avx2") {
                backends.push(Simd(Features::Avx2));
            }
            for simd in backends {
                for len in [0, 1, 31, 32, 64, 96, 135] {
                    let inputs: [Vec<u8>; 4] =
                        std::array::from_fn(|i| (0..len).map(|b| (b * 7 + i * 31 + len) as u8).collect());
                    let mut blocks = [[0u8; RATE]; 4];
                    for (block, input) in blocks.iter_mut().zip(&inputs) {
                        block[..len].copy_from_slice(input);
                    }
                    let got = simd.keccak256_padded(&mut blocks, len);
                    for (g, input) in got.iter().zip(&inputs) {
                        assert_eq!(*g, alloy_primitives::keccak256(input).0, "length {len}");
                    }
                }
            }
        }
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
