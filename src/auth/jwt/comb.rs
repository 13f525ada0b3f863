//! ECDSA P-256 verification (ES256) with a table of the issuer's key.
//!
//! A verification computes `u1·G + u2·Q` for the generator `G` and the
//! issuer's key `Q`. A general-purpose library precomputes multiples of
//! `G` once but doubles its way through `Q` for every signature, since it
//! cannot know that the same few keys sign every token. An issuer's key is
//! long-lived, so here each key gets the table `G` has: for each of the 37
//! seven-bit windows of a scalar, the 64 multiples `j·2^(7i)·Q` in affine
//! form (151 KB a key). A scalar then costs 37 table additions and no
//! doubling at all.
//!
//! The field and scalar arithmetic is RustCrypto's `p256`; this module only
//! arranges the additions. Everything here is public data (the key, the
//! message, the signature), so the code may branch on it, as every
//! verifier does.

use std::sync::{Arc, OnceLock};

use p256::elliptic_curve::bigint::{ArrayEncoding, Limb};
use p256::elliptic_curve::ops::Reduce;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ToEncodedPoint};
use p256::elliptic_curve::{Field, PrimeField};
use p256::{AffinePoint, EncodedPoint, FieldBytes, FieldElement, Scalar, U256};

/// Bits of a scalar per table lookup.
const WINDOW: usize = 7;
/// Windows in a 256-bit scalar, with room for the last digit's carry.
const WINDOWS: usize = 256usize.div_ceil(WINDOW);
/// Multiples per window: a signed digit is in `-64..=64`.
const MULTIPLES: usize = 1 << (WINDOW - 1);

#[derive(Clone, Copy)]
struct Affine {
    x: FieldElement,
    y: FieldElement,
}

/// `table[i·64 + j] = (j+1)·2^(7i)·P`.
struct Table(Box<[Affine]>);

impl Table {
    /// `None` only if a multiple came out as the identity, which a point of
    /// the curve's prime order never gives: the key is refused rather than
    /// checked against a wrong table.
    fn of(point: Affine) -> Option<Table> {
        let mut table = Vec::with_capacity(WINDOWS * MULTIPLES);
        let mut base = point;
        let mut window = Vec::with_capacity(MULTIPLES + 1);
        for _ in 0..WINDOWS {
            window.clear();
            let mut multiple = Jacobian::IDENTITY.add(&base);
            for _ in 0..MULTIPLES {
                window.push(multiple);
                multiple = multiple.add(&base);
            }
            // the next window's base, 2^7 times this one's: 2·(64·base)
            window.push(window[MULTIPLES - 1].double());
            let affine = normalize(&window)?;
            table.extend_from_slice(&affine[..MULTIPLES]);
            base = affine[MULTIPLES];
        }
        Some(Table(table.into_boxed_slice()))
    }

    /// `digit`·2^(7·`window`)·P, for a digit other than 0.
    fn get(&self, window: usize, digit: i8) -> Affine {
        let entry = self.0[window * MULTIPLES + usize::from(digit.unsigned_abs()) - 1];
        if digit < 0 {
            Affine {
                x: entry.x,
                y: -entry.y,
            }
        } else {
            entry
        }
    }
}

/// Jacobian points as affine ones, with one inversion for all of them
/// (Montgomery's trick); `None` if one is the identity. A table's multiples
/// never are: P has prime order n, and no (j+1)·2^(7i) here is a multiple
/// of n.
fn normalize(points: &[Jacobian]) -> Option<Vec<Affine>> {
    if points.iter().any(|p| p.identity) {
        return None;
    }
    let mut prefix = Vec::with_capacity(points.len());
    let mut product = FieldElement::ONE;
    for p in points {
        prefix.push(product);
        product = product.multiply(&p.z);
    }
    let mut inverse = Option::<FieldElement>::from(product.invert())?;
    let mut out = vec![
        Affine {
            x: FieldElement::ZERO,
            y: FieldElement::ZERO
        };
        points.len()
    ];
    for (i, p) in points.iter().enumerate().rev() {
        // inverse is 1/(z_0·…·z_i) here
        let z_inv = inverse.multiply(&prefix[i]);
        inverse = inverse.multiply(&p.z);
        let zz = z_inv.square();
        out[i] = Affine {
            x: p.x.multiply(&zz),
            y: p.y.multiply(&zz.multiply(&z_inv)),
        };
    }
    Some(out)
}

fn coordinates(point: &AffinePoint) -> Affine {
    let encoded = point.to_encoded_point(false);
    let field = |bytes: Option<&FieldBytes>| {
        bytes
            .and_then(|b| Option::from(FieldElement::from_repr(*b)))
            .unwrap_or(FieldElement::ZERO)
    };
    Affine {
        x: field(encoded.x()),
        y: field(encoded.y()),
    }
}

/// Builds the generator's table now if it is not yet built (about a
/// millisecond, once a process); whether it is there.
pub fn generator_ready() -> bool {
    generator_table().is_some()
}

fn generator_table() -> Option<&'static Table> {
    static TABLE: OnceLock<Option<Table>> = OnceLock::new();
    TABLE
        .get_or_init(|| Table::of(coordinates(&AffinePoint::GENERATOR)))
        .as_ref()
}

/// A scalar as 37 signed digits `d_i` in `-64..=64`, `k = Σ d_i·2^(7i)`.
fn digits(k: &Scalar) -> [i8; WINDOWS] {
    let limbs = U256::from(*k).to_words();
    let bits = |at: usize| -> u32 {
        let (limb, shift) = (at / 64, at % 64);
        let mut v = limbs[limb] >> shift;
        if shift + WINDOW > 64 && limb + 1 < limbs.len() {
            v |= limbs[limb + 1] << (64 - shift);
        }
        (v & ((1 << WINDOW) - 1)) as u32
    };
    let mut out = [0i8; WINDOWS];
    let mut carry = 0;
    for (i, digit) in out.iter_mut().enumerate() {
        let v = bits(i * WINDOW) + carry;
        // v ≤ 128; a digit above 64 borrows from the next window
        (*digit, carry) = if v > 64 {
            ((v as i32 - 128) as i8, 1)
        } else {
            (v as i8, 0)
        };
    }
    // the last window holds the scalar's top 4 bits: it never carries
    out
}

/// A point in Jacobian coordinates, `(X/Z², Y/Z³)`, or the identity.
#[derive(Clone, Copy)]
struct Jacobian {
    x: FieldElement,
    y: FieldElement,
    z: FieldElement,
    identity: bool,
}

impl Jacobian {
    const IDENTITY: Jacobian = Jacobian {
        x: FieldElement::ONE,
        y: FieldElement::ONE,
        z: FieldElement::ZERO,
        identity: true,
    };

    /// Adds an affine point (`madd-2007-bl` without its shortcuts), with
    /// the two cases that formula cannot take: the same point (doubled)
    /// and its negation (the identity).
    fn add(&self, q: &Affine) -> Jacobian {
        if self.identity {
            return Jacobian {
                x: q.x,
                y: q.y,
                z: FieldElement::ONE,
                identity: false,
            };
        }
        let z1z1 = self.z.square();
        let u2 = q.x.multiply(&z1z1);
        let s2 = q.y.multiply(&self.z).multiply(&z1z1);
        let h = u2.sub(&self.x);
        let r = s2.sub(&self.y);
        if bool::from(h.is_zero()) {
            return if bool::from(r.is_zero()) {
                self.double()
            } else {
                Jacobian::IDENTITY
            };
        }
        let hh = h.square();
        let hhh = h.multiply(&hh);
        let v = self.x.multiply(&hh);
        let x3 = r.square().sub(&hhh).sub(&v.double());
        let y3 = r.multiply(&v.sub(&x3)).sub(&self.y.multiply(&hhh));
        let z3 = self.z.multiply(&h);
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
            identity: false,
        }
    }

    /// Doubling for a curve with `a = -3` (`dbl-2001-b`).
    fn double(&self) -> Jacobian {
        if self.identity || bool::from(self.y.is_zero()) {
            return Jacobian::IDENTITY;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.multiply(&gamma);
        let alpha = self.x.sub(&delta).multiply(&self.x.add(&delta));
        let alpha = alpha.double().add(&alpha);
        let beta4 = beta.double().double();
        let x3 = alpha.square().sub(&beta4.double());
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2 = gamma.square();
        let y3 = alpha
            .multiply(&beta4.sub(&x3))
            .sub(&gamma2.double().double().double());
        Jacobian {
            x: x3,
            y: y3,
            z: z3,
            identity: false,
        }
    }

    fn add_multiple(self, table: &Table, k: &Scalar) -> Jacobian {
        digits(k)
            .iter()
            .enumerate()
            .filter(|(_, d)| **d != 0)
            .fold(self, |acc, (i, d)| acc.add(&table.get(i, *d)))
    }
}

/// An issuer's P-256 key with its table.
pub struct Key {
    table: Table,
}

impl Key {
    /// From an uncompressed SEC1 point (`04 || x || y`); `None` if it is
    /// not a point of the curve.
    pub fn from_uncompressed(point: &[u8]) -> Option<Key> {
        let encoded = EncodedPoint::from_bytes(point).ok()?;
        if encoded.is_compressed() || encoded.is_identity() {
            return None;
        }
        let affine = Option::<AffinePoint>::from(AffinePoint::from_encoded_point(&encoded))?;
        Some(Key {
            table: Table::of(coordinates(&affine))?,
        })
    }

    /// Checks a fixed-length (`r || s`) signature of SHA-256(`msg`).
    pub fn verify(&self, msg: &[u8], signature: &[u8]) -> bool {
        let Ok(rs) = <&[u8; 64]>::try_from(signature) else {
            return false;
        };
        let scalar = |bytes: &[u8]| -> Option<Scalar> {
            let repr: [u8; 32] = bytes.try_into().ok()?;
            let repr = FieldBytes::from(repr);
            Option::<Scalar>::from(Scalar::from_repr(repr)).filter(|s| !bool::from(s.is_zero()))
        };
        // r and s in 1..n
        let (Some(r), Some(s)) = (scalar(&rs[..32]), scalar(&rs[32..])) else {
            return false;
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, msg);
        let digest: [u8; 32] = digest.as_ref().try_into().unwrap_or_default();
        let e = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(digest));
        let (Some(w), Some(generator)) = (invert(&s), generator_table()) else {
            return false;
        };
        let sum = Jacobian::IDENTITY
            .add_multiple(generator, &(e * w))
            .add_multiple(&self.table, &(r * w));
        if sum.identity {
            return false;
        }
        // x(sum) mod n == r, without an inversion: X == r·Z², or
        // X == (r + n)·Z² when r + n is still below p
        let zz = sum.z.square();
        let r_field =
            |v: &U256| Option::<FieldElement>::from(FieldElement::from_repr(v.to_be_byte_array()));
        let r_int = U256::from(r);
        if r_field(&r_int).is_some_and(|rf| rf.multiply(&zz) == sum.x) {
            return true;
        }
        let (r_plus_n, overflow) = r_int.adc(&ORDER, Limb::ZERO);
        overflow.0 == 0 && r_field(&r_plus_n).is_some_and(|rf| rf.multiply(&zz) == sum.x)
    }
}

/// n, the order of the group: as p256's integer, and as crypto-bigint's
/// odd modulus for the inversion.
const ORDER_HEX: &str = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
const ORDER: U256 = U256::from_be_hex(ORDER_HEX);
const ODD_ORDER: crypto_bigint::Odd<crypto_bigint::U256> =
    crypto_bigint::Odd::<crypto_bigint::U256>::from_be_hex(ORDER_HEX);

/// `s⁻¹ mod n` for a public `s` in `1..n`: crypto-bigint's safegcd in
/// variable time, about 2.5 times as fast as p256's own variable-time
/// inversion.
fn invert(s: &Scalar) -> Option<Scalar> {
    let value = crypto_bigint::U256::from_words(U256::from(*s).to_words());
    let inverse = Option::<crypto_bigint::U256>::from(value.invert_odd_mod_vartime(&ODD_ORDER))?;
    Option::from(Scalar::from_repr(
        U256::from_words(inverse.to_words()).to_be_byte_array(),
    ))
}

/// Tables by key, shared by all threads: building one takes about a
/// millisecond, and an issuer publishes a few keys at a time. Keys left
/// behind by rotation give way to new ones.
pub fn key(point: &[u8]) -> Option<Arc<Key>> {
    static KEYS: OnceLock<quick_cache::sync::Cache<Box<[u8]>, Arc<Key>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| quick_cache::sync::Cache::new(KEPT_KEYS));
    if let Some(key) = keys.get(point) {
        return Some(key);
    }
    let key = Arc::new(Key::from_uncompressed(point)?);
    keys.insert(point.into(), key.clone());
    Some(key)
}

/// Tables kept at most (151 KB each).
const KEPT_KEYS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use p256::ProjectivePoint;

    fn affine_of(p: ProjectivePoint) -> Affine {
        coordinates(&p.to_affine())
    }

    fn same(a: Affine, b: Affine) -> bool {
        a.x == b.x && a.y == b.y
    }

    fn scalar(seed: u64) -> Scalar {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 8 * 8)) as u8 ^ i as u8;
        }
        <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(bytes))
    }

    #[test]
    fn signed_digits_add_up_to_the_scalar() {
        for k in [
            Scalar::ZERO,
            Scalar::ONE,
            -Scalar::ONE,
            scalar(1),
            scalar(2),
            scalar(3),
        ] {
            let sum = digits(&k).iter().rev().fold(Scalar::ZERO, |acc, d| {
                let acc = acc * Scalar::from(1u64 << WINDOW);
                let magnitude = Scalar::from(u64::from(d.unsigned_abs()));
                if *d < 0 {
                    acc - magnitude
                } else {
                    acc + magnitude
                }
            });
            assert_eq!(sum, k);
            assert!(digits(&k).iter().all(|d| (-64..=64).contains(d)));
        }
    }

    #[test]
    fn inverses_are_p256s() {
        use p256::elliptic_curve::ops::Invert;
        let mut rng = p256::elliptic_curve::rand_core::OsRng;
        let edges = [
            Scalar::ONE,
            Scalar::from(2u64),
            -Scalar::ONE,
            -Scalar::from(2u64),
            Scalar::from(u64::MAX),
        ];
        let random = (0..200).map(|_| Scalar::random(&mut rng));
        for s in edges.into_iter().chain(random) {
            let ours = invert(&s).expect("an inverse");
            assert_eq!(ours, Option::<Scalar>::from(s.invert_vartime()).unwrap());
            assert_eq!(ours * s, Scalar::ONE);
        }
    }

    #[test]
    fn table_entries_are_the_multiples() {
        let g = ProjectivePoint::GENERATOR;
        let table = generator_table().unwrap();
        for (window, digit) in [
            (0usize, 1i8),
            (0, 2),
            (0, 64),
            (0, -64),
            (5, 33),
            (36, 15),
            (36, -1),
        ] {
            let k = Scalar::from(2u64).pow_vartime(&[(WINDOW * window) as u64])
                * Scalar::from(u64::from(digit.unsigned_abs()));
            let k = if digit < 0 { -k } else { k };
            assert!(
                same(table.get(window, digit), affine_of(g * k)),
                "{window} {digit}"
            );
        }
    }

    #[test]
    fn additions_take_the_doubling_and_the_negation() {
        let p = affine_of(ProjectivePoint::GENERATOR * scalar(7));
        let twice = Jacobian::IDENTITY.add(&p).add(&p);
        let expected = affine_of(ProjectivePoint::GENERATOR * scalar(7).double());
        assert!(same(normalize(&[twice]).unwrap()[0], expected));
        let minus = Affine { x: p.x, y: -p.y };
        assert!(Jacobian::IDENTITY.add(&p).add(&minus).identity);
        // a multiple sum matches p256's own scalar multiplication
        let k = scalar(9);
        let sum = Jacobian::IDENTITY.add_multiple(generator_table().unwrap(), &k);
        assert!(same(
            normalize(&[sum]).unwrap()[0],
            affine_of(ProjectivePoint::GENERATOR * k)
        ));
        // the identity has no affine form: a table with one is refused
        assert!(normalize(&[sum, Jacobian::IDENTITY]).is_none());
    }

    #[test]
    fn signatures_are_checked_as_p256_checks_them() {
        let mut rng = p256::elliptic_curve::rand_core::OsRng;
        for i in 0..20 {
            let signer = SigningKey::random(&mut rng);
            let point = signer.verifying_key().to_encoded_point(false);
            let key = Key::from_uncompressed(point.as_bytes()).unwrap();
            let msg = format!("eyJhbGciOiJFUzI1NiJ9.{i}");
            let sig: Signature = signer.sign(msg.as_bytes());
            let good = sig.to_bytes();
            assert!(key.verify(msg.as_bytes(), &good));
            assert!(!key.verify(b"another message", &good));
            for bit in [0, 7, 255, 256, 300, 511] {
                let mut bad = good;
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(!key.verify(msg.as_bytes(), &bad), "bit {bit}");
            }
            assert!(!key.verify(msg.as_bytes(), &good[..63]));
            assert!(!key.verify(msg.as_bytes(), &[0u8; 64]));
            // s and n - s are both valid signatures of the same message
            let (r, s) = sig.split_scalars();
            let high = Signature::from_scalars(*r, -*s).unwrap().to_bytes();
            assert!(key.verify(msg.as_bytes(), &high));
        }
    }

    #[test]
    fn points_off_the_curve_are_refused() {
        let signer = SigningKey::from_slice(&[7u8; 32]).unwrap();
        let mut point = signer
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        assert!(Key::from_uncompressed(&point).is_some());
        point[64] ^= 1;
        assert!(Key::from_uncompressed(&point).is_none());
        assert!(Key::from_uncompressed(&point[..33]).is_none());
        assert!(Key::from_uncompressed(&[0u8]).is_none());
        let mut compressed = vec![2u8];
        compressed.extend_from_slice(&[1u8; 32]);
        assert!(Key::from_uncompressed(&compressed).is_none());
    }
}
