//! Human-readable durations: `"250ms"`, `"5m"`, `"1h30m"`.
//!
//! The grammar is strict, so that a typo is an error rather than a surprise: one or more
//! `<integer><unit>` parts, no spaces, no sign, no fractions, units from `d`, `h`, `m`, `s`,
//! `ms`, `us`, `ns`, each at most once and from the largest to the smallest.

use std::time::Duration;

/// The units, largest first, with their length in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

const HINT: &str = "expected integers with units (d, h, m, s, ms, us, ns), largest first, as in \
                    \"250ms\", \"5m\" or \"1h30m\"";

/// Parses a duration such as `"1h30m"`.
///
/// # Errors
///
/// A message saying what is wrong, starting with `invalid duration "<text>"`.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let fail = |why: &str| Err(format!("invalid duration {text:?}: {why}; {HINT}"));
    if text.is_empty() {
        return fail("empty");
    }
    let mut rest = text;
    let mut total: u128 = 0;
    // Index in UNITS of the last unit seen: the next must come strictly after it.
    let mut last: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            return fail("expected a number");
        }
        let (number, tail) = rest.split_at(digits);
        let letters = tail.len()
            - tail
                .trim_start_matches(|c: char| c.is_ascii_alphabetic())
                .len();
        let (unit, tail) = tail.split_at(letters);
        if unit.is_empty() {
            return fail(&format!("{number:?} has no unit"));
        }
        let Some(at) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return fail(&format!("unknown unit {unit:?}"));
        };
        if last.is_some_and(|l| at <= l) {
            return fail(&format!("unit {unit:?} out of order or repeated"));
        }
        last = Some(at);
        let Ok(n) = number.parse::<u128>() else {
            return fail("number too large");
        };
        total = match n
            .checked_mul(UNITS[at].1)
            .and_then(|x| x.checked_add(total))
        {
            Some(t) => t,
            None => return fail("too large"),
        };
        rest = tail;
    }
    let Ok(secs) = u64::try_from(total / 1_000_000_000) else {
        return fail("too large");
    };
    let nanos = u32::try_from(total % 1_000_000_000).expect("below 10^9");
    Ok(Duration::new(secs, nanos))
}

/// Formats a duration in the grammar [`parse`] reads, with the fewest parts: `"1h30m"`,
/// `"250ms"`, `"0s"`. `parse(&format(d)) == Ok(d)` for every `d`.
pub(crate) fn format(d: Duration) -> String {
    let mut left = d.as_nanos();
    if left == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, nanos) in UNITS {
        let n = left / nanos;
        if n > 0 {
            out.push_str(&n.to_string());
            out.push_str(unit);
            left -= n * nanos;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_examples() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("1s2ms3us4ns"), Ok(Duration::new(1, 2_003_004)));
    }

    #[test]
    fn rejects_what_is_not_strictly_a_duration() {
        for bad in [
            "",
            "5",
            "5 parsecs",
            "5 m",
            " 5m",
            "5m ",
            "-5m",
            "+5m",
            "1.5s",
            "5M",
            "m",
            "30m1h",
            "1m1m",
            "1sec",
            "5µs",
            "99999999999999999999999999999999999999999d",
            "1h-",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid duration {bad:?}")),
                "{bad}: {err}"
            );
        }
        assert!(
            parse("5 parsecs")
                .unwrap_err()
                .contains("\"5\" has no unit")
        );
        assert!(parse("5sec").unwrap_err().contains("unknown unit \"sec\""));
        assert!(parse("30m1h").unwrap_err().contains("out of order"));
        // Past u64::MAX seconds.
        assert!(parse("213503982334602d").unwrap_err().contains("too large"));
    }

    #[test]
    fn format_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(250),
            Duration::from_secs(5400),
            Duration::new(90_061, 1_001_001),
            Duration::MAX,
        ] {
            assert_eq!(parse(&format(d)), Ok(d), "{}", format(d));
        }
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
    }
}
