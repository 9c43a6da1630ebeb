//! What PostgreSQL's `jsonb` makes of a JSON value, and whether it reads
//! back as the value that was stored.
//!
//! Two things valid in JSON do not survive a trip through a `jsonb` column:
//!
//! - **NUL.** `jsonb` (like `text`) cannot hold U+0000, in a string or a
//!   key; PostgreSQL refuses the insert ([`has_nul`]).
//! - **Numbers, possibly.** `jsonb` keeps every number as `numeric` and
//!   prints it back in plain decimal notation, never with an exponent:
//!   `1.7976931348623157e308` comes back as a 309-digit integer, `5e-324` as
//!   `0.` and 323 zeros and a 5, `1e16` as `10000000000000000`, `-0.0` as
//!   `0.0` (`numeric` has no negative zero). Whether serde_json reads such a
//!   text back as the number that was sent depends on its float parser: the
//!   default one is fast but not exact (of floats drawn from all bit
//!   patterns, about a third came back one unit in the last place off, and
//!   a 309-digit integer overflows to "number out of range", so one stored
//!   input made every later `GET /v1/jobs` of its tenant a 500). The
//!   workspace turns on serde_json's `float_roundtrip`, which parses
//!   exactly, and with it every finite `f64` and every `i64`/`u64` reads
//!   back: `tests/tests/api/round_trip.rs` holds the emulation below to the real
//!   PostgreSQL and sends generated numbers, extremes included, through the
//!   API.
//!
//! [`number_reads_back`] does not take that on trust: it prints a number as
//! PostgreSQL will ([`number_text`], an emulation of `numeric_in` and
//! `numeric_out`) and parses the text with the serde_json this build reads
//! rows with. A number it refuses would not read back; the submission
//! parse ([`crate::submission`]) turns it into a 422 instead of a stored
//! value that breaks every read of it.
//!
//! "The same number" is equality as serde_json, PostgreSQL and JSON
//! readers in general see it: integers exactly, floats as `f64` (`==`). So
//! `-0.0` reads back as `0.0`, equal to it (`'-0.0'::jsonb = '0'::jsonb`
//! too); refusing it would turn the result of ordinary float arithmetic into
//! a 422 for a sign nothing downstream distinguishes. A float with an
//! integral value of 16 digits or more (`1e16`) is printed as an integer
//! and reads back as one, of the same value.
//!
//! ```
//! use offpeak_core::jsonb;
//!
//! assert_eq!(jsonb::number_text("1.5e-7").as_deref(), Some("0.00000015"));
//! assert_eq!(jsonb::number_text("1e+16").as_deref(), Some("10000000000000000"));
//! assert_eq!(jsonb::number_text("-0.0").as_deref(), Some("0.0"));
//! let max = serde_json::Number::from_f64(f64::MAX).unwrap();
//! assert!(jsonb::number_reads_back(&max).is_ok());
//! ```

use serde_json::{Number, Value};

/// `numeric`'s largest display scale (`NUMERIC_DSCALE_MAX`): digits after the point.
const MAX_SCALE: i64 = 0x3FFF;
/// `numeric`'s most digits before the point (`NUMERIC_WEIGHT_MAX` + 1 base-10000 digits of 4 each).
const MAX_INTEGER_DIGITS: i64 = 131_072;

/// Whether any string or key in `v` holds a NUL (U+0000), which `jsonb` cannot store.
#[must_use]
pub fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// The text PostgreSQL prints for the JSON number `token` once stored in
/// `jsonb`, or `None` where `numeric` refuses it (out of its range) or
/// `token` is not a JSON number.
///
/// `numeric_in` keeps the token's digits exactly and a display scale of
/// the digits after the point minus the exponent (at least 0);
/// `numeric_out` prints them in plain notation, `-` only for a value that
/// is not zero. Nothing is ever rounded: the scale always covers every
/// digit given.
#[must_use]
pub fn number_text(token: &str) -> Option<String> {
    let (negative, rest) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => {
            let e = &rest[at + 1..];
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Beyond any exponent `numeric` takes (PostgreSQL refuses past
            // INT_MAX / 2), so saturating keeps the verdict.
            let magnitude = digits.bytes().fold(0i64, |n, b| n.saturating_mul(10).saturating_add(i64::from(b - b'0')));
            (&rest[..at], if e.starts_with('-') { -magnitude } else { magnitude })
        }
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let json_int = int == "0" || (!int.is_empty() && !int.starts_with('0'));
    let json_frac = !mantissa.contains('.') || !frac.is_empty();
    if !json_int || !json_frac || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let len = digits.len() as i64;
    let point = (int.len() as i64).saturating_add(exponent);
    let scale = (frac.len() as i64).saturating_sub(exponent).max(0);
    let first_nonzero = digits.iter().position(|&d| d != b'0').map(|i| i as i64);
    if scale > MAX_SCALE || first_nonzero.is_some_and(|f| point - f > MAX_INTEGER_DIGITS) {
        return None;
    }
    let digit = |i: i64| if (0..len).contains(&i) { char::from(digits[i as usize]) } else { '0' };
    let mut out = String::with_capacity(usize::try_from(point.max(1) + scale + 2).unwrap_or(0));
    if negative && first_nonzero.is_some() {
        out.push('-');
    }
    match first_nonzero {
        Some(first) if first < point => (first..point).for_each(|i| out.push(digit(i))),
        _ => out.push('0'),
    }
    if scale > 0 {
        out.push('.');
        (point..point + scale).for_each(|i| out.push(digit(i)));
    }
    Some(out)
}

/// A number that would not read back from `jsonb` as itself.
#[derive(Debug, Clone, PartialEq)]
pub struct NotReadBack {
    /// The number as it was given (serde_json's text of it).
    pub number: String,
    /// What PostgreSQL would print, if it stores it at all.
    pub stored: Option<String>,
    /// The number that text reads back as, if it reads back at all.
    pub reads_back_as: Option<Number>,
}

impl std::fmt::Display for NotReadBack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.stored, &self.reads_back_as) {
            (None, _) => write!(f, "the number {} is out of the range PostgreSQL stores", self.number),
            (Some(text), None) => write!(
                f,
                "the number {} would be stored as a {}-character decimal that does not read back as a number",
                self.number,
                text.len()
            ),
            (Some(text), Some(back)) => write!(
                f,
                "the number {} would be stored as a {}-character decimal that reads back as {back}",
                self.number,
                text.len()
            ),
        }
    }
}

/// Whether `n`, stored in `jsonb` and read back with serde_json, is the
/// same number (see the module docs for "same").
///
/// # Errors
/// [`NotReadBack`] saying what PostgreSQL would print and what that reads
/// back as.
pub fn number_reads_back(n: &Number) -> Result<(), NotReadBack> {
    // An integer is printed by serde_json with all its digits and no point
    // or exponent; PostgreSQL prints the same digits, and they parse back
    // as the same i64 or u64.
    if !n.is_f64() {
        return Ok(());
    }
    let token = n.to_string();
    let (stored, back) = stored_and_read_back(&token);
    match &back {
        Some(b) if same(n, b) => Ok(()),
        _ => Err(NotReadBack { number: token, stored, reads_back_as: back }),
    }
}

/// What PostgreSQL prints for a number token, and what serde_json reads
/// from that text (`None` where PostgreSQL refuses the token, or serde_json
/// the text).
fn stored_and_read_back(token: &str) -> (Option<String>, Option<Number>) {
    let stored = number_text(token);
    let back = stored.as_deref().and_then(|text| serde_json::from_str::<Number>(text).ok());
    (stored, back)
}

/// "The same number": integers exactly, and floats (or an integer beside a
/// float) as `f64`.
fn same(a: &Number, b: &Number) -> bool {
    if a.is_f64() || b.is_f64() {
        a.as_f64() == b.as_f64()
    } else {
        a == b
    }
}

/// Whether a number as written in JSON text (`token`, e.g. a provider's
/// `1e400`), stored in `jsonb` and read back with serde_json, is the number
/// the text says (see the module docs for "same"). Text passed through
/// without being parsed (the worker's results) is stored as written, so
/// this checks the token itself, not serde_json's shortest form of it: a
/// token serde_json cannot read (`1e400`), or whose stored digits read back
/// as another number, is refused.
#[must_use]
pub fn token_reads_back(token: &str) -> bool {
    // The common case, cheaply: an integer of at most 18 digits is an i64,
    // printed by PostgreSQL with the same digits (`-0` as `0`, equal).
    let digits = token.strip_prefix('-').unwrap_or(token);
    if !digits.is_empty() && digits.len() <= 18 && digits.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    let Ok(sent) = serde_json::from_str::<Number>(token) else {
        return false;
    };
    stored_and_read_back(token).1.is_some_and(|back| same(&sent, &back))
}

/// The first number in `v` (depth first, keys in the value's order) that
/// would not read back, with its path below `v` (see [`member_path`]; empty
/// for `v` itself).
#[must_use]
pub fn first_number_not_read_back(v: &Value) -> Option<(String, NotReadBack)> {
    first_number_where(v, &|n| number_reads_back(n).err())
}

/// The first number in `v` that `refuse` has a reason for, with its path.
fn first_number_where<E>(v: &Value, refuse: &impl Fn(&Number) -> Option<E>) -> Option<(String, E)> {
    match v {
        Value::Number(n) => refuse(n).map(|e| (String::new(), e)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, item)| first_number_where(item, refuse).map(|(path, e)| (format!("[{i}]{path}"), e))),
        Value::Object(o) => o
            .iter()
            .find_map(|(k, item)| first_number_where(item, refuse).map(|(path, e)| (member_path(k) + &path, e))),
        _ => None,
    }
}

/// The path step to an object's member: `.key` for a plain identifier,
/// otherwise `["key"]` with the key JSON-quoted, so that any key (a dot, a
/// bracket, a quote in it) names one member.
#[must_use]
pub fn member_path(key: &str) -> String {
    let plain = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_token_reads_back_unless_serde_json_cannot_read_it_or_its_stored_digits() {
        for token in ["0", "-0", "512", "-9223372036854775808", "18446744073709551615", "12345678901234567890123",
                      "1.5", "-1.5e+2", "1e16", "1.7976931348623157e308", "5e-324", "0.1000000000000000000000001"] {
            assert!(token_reads_back(token), "{token}");
        }
        // Out of f64's range, or past what `numeric` takes at all.
        for token in ["1e400", "-1e309", "1e131072", "1e-16384", "", "-", "1.5.5"] {
            assert!(!token_reads_back(token), "{token}");
        }
    }

    #[test]
    fn numbers_print_in_plain_notation_with_the_scale_numeric_keeps() {
        // Each pair checked against PostgreSQL 15 (`SELECT '…'::jsonb::text`).
        for (token, printed) in [
            ("0", "0"),
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("0.0e5", "0"),
            ("100", "100"),
            ("1.50", "1.50"),
            ("1.50e1", "15.0"),
            ("1.5e-7", "0.00000015"),
            ("1e-2", "0.01"),
            ("-1.5e+2", "-150"),
            ("1e+16", "10000000000000000"),
            ("1E16", "10000000000000000"),
            ("12345678901234567890123", "12345678901234567890123"),
            ("-9223372036854775808", "-9223372036854775808"),
            ("0.000", "0.000"),
            ("-0.001", "-0.001"),
        ] {
            assert_eq!(number_text(token).as_deref(), Some(printed), "{token}");
        }
        let max = number_text("1.7976931348623157e+308").unwrap();
        assert_eq!(max, format!("17976931348623157{}", "0".repeat(292)));
        let min = number_text("5e-324").unwrap();
        assert_eq!(min, format!("0.{}5", "0".repeat(323)));
    }

    #[test]
    fn what_is_not_a_json_number_or_beyond_numeric_has_no_text() {
        for token in ["", "-", "01", "1.", ".5", "+1", "1e", "1e+", "0x10", "1.2.3", "NaN", "1_000", "1e99999999999"] {
            assert_eq!(number_text(token), None, "{token}");
        }
        assert_eq!(number_text("1e-16384"), None, "a scale past 16383");
        assert!(number_text("1e-16383").is_some());
        assert_eq!(number_text("1e131072"), None, "more than 131072 digits before the point");
        assert!(number_text("1e131071").is_some());
    }

    #[test]
    fn the_extremes_of_f64_read_back_because_float_roundtrip_is_on() {
        // Each of these fails without serde_json's `float_roundtrip` (the
        // workspace turns it on): the largest overflows, the others come
        // back one unit in the last place off.
        for f in [f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 5e-324, 1e308, 2.291712365432881e-9, -3.4388695815623755e305] {
            let n = Number::from_f64(f).unwrap();
            assert_eq!(number_reads_back(&n), Ok(()), "{f:e}");
        }
    }

    #[test]
    fn negative_zero_reads_back_as_zero_which_is_the_same_number() {
        let n = Number::from_f64(-0.0).unwrap();
        assert_eq!(number_text(&n.to_string()).as_deref(), Some("0.0"));
        assert_eq!(number_reads_back(&n), Ok(()));
    }

    #[test]
    fn integers_of_every_width_read_back() {
        for v in [json!(0), json!(u64::MAX), json!(i64::MIN), json!(i64::MAX), json!(-1)] {
            let Value::Number(n) = &v else { unreachable!() };
            assert_eq!(number_text(&n.to_string()).as_deref(), Some(n.to_string().as_str()));
            assert_eq!(number_reads_back(n), Ok(()));
        }
    }

    #[test]
    fn a_refusal_says_what_would_be_stored_and_read() {
        let e = NotReadBack { number: "1e308".into(), stored: Some(format!("1{}", "0".repeat(308))), reads_back_as: None };
        assert_eq!(e.to_string(), "the number 1e308 would be stored as a 309-character decimal that does not read back as a number");
        let e = NotReadBack { number: "0.1".into(), stored: Some("0.1".into()), reads_back_as: Number::from_f64(0.2) };
        assert_eq!(e.to_string(), "the number 0.1 would be stored as a 3-character decimal that reads back as 0.2");
    }

    #[test]
    fn paths_name_the_member_and_element() {
        let v = json!({"a": [1, {"b c": 2.5}], "d": {"e": -0.5}, "f": 7});
        let refuse = |at: f64| move |n: &Number| (n.as_f64() == Some(at)).then_some(());
        assert_eq!(first_number_where(&v, &refuse(2.5)), Some((r#".a[1]["b c"]"#.to_owned(), ())));
        assert_eq!(first_number_where(&v, &refuse(-0.5)), Some((".d.e".to_owned(), ())));
        assert_eq!(first_number_where(&v, &refuse(7.0)), Some((".f".to_owned(), ())));
        assert_eq!(first_number_where(&json!(7), &refuse(7.0)), Some((String::new(), ())));
        assert_eq!(first_number_where(&v, &refuse(3.0)), None);
        assert_eq!(first_number_not_read_back(&v), None);
        assert_eq!(member_path("x_1"), ".x_1");
        assert_eq!(member_path("1x"), r#"["1x"]"#);
        assert_eq!(member_path("a.b"), r#"["a.b"]"#);
        assert_eq!(member_path(r#"q"uote"#), r#"["q\"uote"]"#);
        assert_eq!(member_path(""), r#"[""]"#);
    }

    #[test]
    fn nul_is_found_in_any_string_or_key() {
        assert!(!has_nul(&json!({"a": ["b", {"c": 1}]})));
        assert!(has_nul(&json!({"a": [{"b": "x\u{0}"}]})));
        assert!(has_nul(&json!({"a\u{0}": 1})));
        assert!(has_nul(&json!("\u{0}")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5_000))]

        /// Every finite f64, by its bits: what PostgreSQL prints parses back to it.
        #[test]
        fn every_finite_f64_reads_back(bits in any::<u64>()) {
            let f = f64::from_bits(bits);
            prop_assume!(f.is_finite());
            let n = Number::from_f64(f).unwrap();
            let text = number_text(&n.to_string()).unwrap();
            prop_assert!(!text.contains(['e', 'E']));
            prop_assert_eq!(number_reads_back(&n), Ok(()));
            prop_assert_eq!(text.parse::<f64>().unwrap(), f);
        }

        /// A number token and its plain-decimal text are the same value.
        #[test]
        fn the_plain_text_is_the_same_decimal(int in "0|[1-9][0-9]{0,20}", frac in proptest::option::of("[0-9]{1,20}"), exp in proptest::option::of(-40i64..40)) {
            let token = format!("{int}{}{}", frac.as_ref().map(|f| format!(".{f}")).unwrap_or_default(), exp.map(|e| format!("e{e}")).unwrap_or_default());
            let text = number_text(&token).unwrap();
            // Compare as exact decimals: strip the points, align the scales.
            let decimal = |s: &str| -> (String, i64) {
                let (m, e) = s.split_once('e').map_or((s, 0), |(m, e)| (m, e.parse::<i64>().unwrap()));
                let (i, f) = m.split_once('.').unwrap_or((m, ""));
                let digits = format!("{i}{f}").trim_start_matches('0').to_owned();
                let scale = f.len() as i64 - e;
                let trimmed = digits.trim_end_matches('0');
                (trimmed.to_owned(), scale - (digits.len() - trimmed.len()) as i64)
            };
            let (a, b) = (decimal(&token), decimal(&text));
            if a.0.is_empty() {
                prop_assert!(b.0.is_empty());
            } else {
                prop_assert_eq!(a, b);
            }
        }
    }
}
