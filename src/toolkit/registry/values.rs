//! How a registry file's values are read and written, for [`CacheConfig`](super::CacheConfig)'s
//! serde attributes: durations through `humantime`, counts, numbers and names.
//!
//! Reading only converts: a value of the wrong type, a duration `humantime` does not read, a
//! negative count or an unknown name is a serde error here; whether a value is in range is
//! the validation pass's business (`CacheConfig::check`), which also sees configurations
//! built in code.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::Serializer;

use crate::policy::AnyPolicy;
use crate::{LeaseExpiry, RefreshMode};

/// A duration string, read by [`humantime::parse_duration`].
struct Human(Duration);

impl<'de> Deserialize<'de> for Human {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string such as \"5m\" or \"1h 30m\"")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                humantime::parse_duration(text)
                    .map_err(|e| E::custom(format!("invalid duration {text:?}: {e}")))
            }
        }
        d.deserialize_str(Text).map(Self)
    }
}

/// `Option<Duration>` as a `humantime` string: read with [`humantime::parse_duration`]
/// (`"250ms"`, `"5min"`, `"1h 30m"`, `"1.5s"`), written with [`humantime::format_duration`]
/// (`"1h 30m"`), which reads back as the same duration.
pub(crate) mod duration {
    use super::{Deserialize, Deserializer, Duration, Human, Serializer};

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Human>::deserialize(d)?.map(|Human(d)| d))
    }

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.collect_str(&humantime::format_duration(*d)),
            None => s.serialize_none(),
        }
    }
}

/// An integer of at least zero.
struct Unsigned(u64);

impl<'de> Deserialize<'de> for Unsigned {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Integer;
        impl Visitor<'_> for Integer {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<u64, E> {
                Ok(n)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<u64, E> {
                u64::try_from(n).map_err(|_| E::custom(format!("must not be negative, got {n}")))
            }
        }
        d.deserialize_u64(Integer).map(Self)
    }
}

/// A count (`max_entries`, `shards`, `admission_margin`...): an integer of at least zero that
/// fits in `T`.
pub(crate) fn count<'de, D: Deserializer<'de>, T: TryFrom<u64>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    Option::<Unsigned>::deserialize(d)?
        .map(|Unsigned(n)| {
            T::try_from(n).map_err(|_| de::Error::custom(format!("too large, got {n}")))
        })
        .transpose()
}

/// A number: a float, or an integer read as one (`xfetch_beta = 2`).
struct Number(f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Float;
        impl Visitor<'_> for Float {
            type Value = f64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, f: f64) -> Result<f64, E> {
                Ok(f)
            }
            #[allow(clippy::cast_precision_loss)] // small configuration numbers
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<f64, E> {
                Ok(n as f64)
            }
            #[allow(clippy::cast_precision_loss)]
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<f64, E> {
                Ok(n as f64)
            }
        }
        d.deserialize_f64(Float).map(Self)
    }
}

/// An optional [`Number`].
pub(crate) fn number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    Ok(Option::<Number>::deserialize(d)?.map(|Number(f)| f))
}

/// A policy name in any case, stored as [`AnyPolicy::NAMES`] spells it.
pub(crate) fn policy<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let name = String::deserialize(d)?;
    AnyPolicy::from_name(&name)
        .map(|p| p.name())
        .ok_or_else(|| {
            de::Error::custom(format!(
                "unknown policy {name:?}, expected one of {}",
                AnyPolicy::NAMES.join(", ")
            ))
        })
}

/// One of `choices` by name.
fn one_of<'de, D: Deserializer<'de>, T: Copy>(
    d: D,
    choices: &[(&str, T)],
) -> Result<Option<T>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    choices
        .iter()
        .find(|(name, _)| *name == text)
        .map(|&(_, v)| Some(v))
        .ok_or_else(|| {
            let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
            de::Error::custom(format!(
                "unknown value {text:?}, expected one of {}",
                names.join(", ")
            ))
        })
}

/// The name of `value` among `choices`.
fn name_of<S: Serializer, T: PartialEq>(
    value: Option<&T>,
    choices: &[(&'static str, T)],
    s: S,
) -> Result<S::Ok, S::Error> {
    match value.and_then(|v| choices.iter().find(|(_, c)| c == v)) {
        Some((name, _)) => s.serialize_str(name),
        None => s.serialize_none(),
    }
}

/// `Option<RefreshMode>` by name: `"background"`, `"caller"`.
pub(crate) mod refresh_mode {
    use super::{Deserializer, RefreshMode, Serializer};

    const NAMES: [(&str, RefreshMode); 2] = [
        ("background", RefreshMode::Background),
        ("caller", RefreshMode::Caller),
    ];

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<RefreshMode>, D::Error> {
        super::one_of(d, &NAMES)
    }

    pub(crate) fn serialize<S: Serializer>(
        m: &Option<RefreshMode>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::name_of(m.as_ref(), &NAMES, s)
    }
}

/// `Option<LeaseExpiry>` by name: `"take_over"`, `"load_independently"`.
pub(crate) mod on_lease_expiry {
    use super::{Deserializer, LeaseExpiry, Serializer};

    const NAMES: [(&str, LeaseExpiry); 2] = [
        ("take_over", LeaseExpiry::TakeOver),
        ("load_independently", LeaseExpiry::LoadIndependently),
    ];

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<LeaseExpiry>, D::Error> {
        super::one_of(d, &NAMES)
    }

    pub(crate) fn serialize<S: Serializer>(
        e: &Option<LeaseExpiry>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::name_of(e.as_ref(), &NAMES, s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<Duration>, String> {
        Human::deserialize(de::value::StrDeserializer::<de::value::Error>::new(text))
            .map(|Human(d)| Some(d))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_are_what_humantime_reads() {
        let s = Duration::from_secs;
        assert_eq!(parse("250ms"), Ok(Some(Duration::from_millis(250))));
        assert_eq!(parse("5m"), Ok(Some(s(300))));
        assert_eq!(parse("5min"), Ok(Some(s(300))));
        assert_eq!(parse("1h 30m"), Ok(Some(s(5400))));
        assert_eq!(parse("1h30m"), Ok(Some(s(5400))));
        assert_eq!(parse("1.5s"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(parse("2 days"), Ok(Some(s(2 * 86_400))));
        assert_eq!(parse("0s"), Ok(Some(Duration::ZERO)));
        for bad in ["", "5", "5 parsecs", "-5m", "abc", "99999999999999999999d"] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with(&format!("invalid duration {bad:?}: ")), "{e}");
        }
    }

    #[test]
    fn durations_are_written_as_humantime_reads_them() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_millis(250),
            Duration::from_secs(5400),
            Duration::new(90_061, 1_001_001),
            Duration::new(10_000_000_000, 999_999_999),
            Duration::MAX,
        ] {
            let text = humantime::format_duration(d).to_string();
            assert_eq!(parse(&text), Ok(Some(d)), "{text}");
        }
        assert_eq!(
            humantime::format_duration(Duration::from_secs(5400)).to_string(),
            "1h 30m"
        );
    }
}
