//! How values and keys travel to Redis: [`Codec`] (values as bytes, [`Postcard`] by default)
//! and [`KeyCodec`] (keys as strings, [`DisplayKey`] by default).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A value that could not be encoded or decoded.
///
/// # Example
///
/// ```
/// use aside::tier::{Codec, Postcard};
/// let err = Codec::<u32>::decode(&Postcard, &[]).unwrap_err();
/// assert!(err.to_string().contains("decode"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    message: String,
}

impl CodecError {
    /// An error with this description.
    ///
    /// # Example
    ///
    /// ```
    /// let err = aside::tier::CodecError::new("bad magic byte");
    /// assert_eq!(err.to_string(), "bad magic byte");
    /// ```
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodecError {}

/// Turns values into the bytes stored in Redis and back.
///
/// Every instance sharing a key prefix must use the same codec and the same value layout:
/// change the [`key_prefix`](crate::tier::TierBuilder::key_prefix) when the layout changes, so
/// that old and new instances never read each other's bytes. A value that fails to decode is
/// treated as an L2 miss (and counted in [`TierMetrics::codec_errors`](crate::tier::TierMetrics)).
///
/// # Example
///
/// A codec for plain UTF-8 strings:
///
/// ```
/// use aside::tier::{Codec, CodecError};
///
/// struct Utf8;
/// impl Codec<String> for Utf8 {
///     fn encode(&self, value: &String) -> Result<Vec<u8>, CodecError> {
///         Ok(value.as_bytes().to_vec())
///     }
///     fn decode(&self, bytes: &[u8]) -> Result<String, CodecError> {
///         String::from_utf8(bytes.to_vec()).map_err(|e| CodecError::new(e.to_string()))
///     }
/// }
/// assert_eq!(Utf8.decode(&Utf8.encode(&"héllo".to_string()).unwrap()).unwrap(), "héllo");
/// ```
pub trait Codec<V>: Send + Sync + 'static {
    /// The bytes for `value`.
    ///
    /// # Errors
    ///
    /// When `value` cannot be represented; the value is then not written to Redis (the caller
    /// still gets it).
    fn encode(&self, value: &V) -> Result<Vec<u8>, CodecError>;

    /// The value for `bytes`, as written by [`encode`](Codec::encode).
    ///
    /// # Errors
    ///
    /// When `bytes` are not a valid encoding; the tier treats that as a miss.
    fn decode(&self, bytes: &[u8]) -> Result<V, CodecError>;
}

/// The default codec: serde into [`postcard`](https://docs.rs/postcard), a compact,
/// non-self-describing binary format (varint integers, no field names). A `u64` takes 1 to 10
/// bytes, a struct the sum of its fields.
///
/// Formats that need `deserialize_any` (such as `serde_json::Value` or untagged enums) do not
/// round-trip through postcard; give those a self-describing [`Codec`].
///
/// # Example
///
/// ```
/// use aside::tier::{Codec, Postcard};
/// let bytes = Postcard.encode(&(7u64, "seven".to_string())).unwrap();
/// assert_eq!(bytes.len(), 7); // 1 byte for 7, 1 for the length, 5 for the text
/// let back: (u64, String) = Postcard.decode(&bytes).unwrap();
/// assert_eq!(back, (7, "seven".to_string()));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Postcard;

impl<V: Serialize + DeserializeOwned> Codec<V> for Postcard {
    fn encode(&self, value: &V) -> Result<Vec<u8>, CodecError> {
        postcard::to_allocvec(value).map_err(|e| CodecError::new(format!("encode: {e}")))
    }

    fn decode(&self, bytes: &[u8]) -> Result<V, CodecError> {
        postcard::from_bytes(bytes).map_err(|e| CodecError::new(format!("decode: {e}")))
    }
}

/// Turns a key into the text of its Redis key (after the prefix) and back.
///
/// The backplane carries the encoded key, and every receiving instance decodes it to drop the
/// key from its L1, so `decode(encode(k)) == Some(k)` must hold. A message whose key does not
/// decode clears the receiver's whole L1 (the safe answer) and is counted in
/// [`TierMetrics::backplane_undecodable`](crate::tier::TierMetrics).
///
/// # Example
///
/// Keys that are pairs of ids:
///
/// ```
/// use aside::tier::KeyCodec;
///
/// struct Pair;
/// impl KeyCodec<(u32, u32)> for Pair {
///     fn encode(&self, key: &(u32, u32)) -> String {
///         format!("{}:{}", key.0, key.1)
///     }
///     fn decode(&self, text: &str) -> Option<(u32, u32)> {
///         let (a, b) = text.split_once(':')?;
///         Some((a.parse().ok()?, b.parse().ok()?))
///     }
/// }
/// assert_eq!(Pair.decode(&Pair.encode(&(4, 2))), Some((4, 2)));
/// ```
pub trait KeyCodec<K>: Send + Sync + 'static {
    /// The text of `key`'s Redis key (without the prefix).
    fn encode(&self, key: &K) -> String;

    /// The key `text` was encoded from, or `None` if it is not a valid encoding.
    fn decode(&self, text: &str) -> Option<K>;
}

/// The default key codec: `Display` to encode and `FromStr` to decode (integers, strings,
/// UUIDs, ...).
///
/// # Example
///
/// ```
/// use aside::tier::{DisplayKey, KeyCodec};
/// assert_eq!(DisplayKey.encode(&42u64), "42");
/// assert_eq!(KeyCodec::<u64>::decode(&DisplayKey, "42"), Some(42));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct DisplayKey;

impl<K: fmt::Display + FromStr> KeyCodec<K> for DisplayKey {
    fn encode(&self, key: &K) -> String {
        key.to_string()
    }

    fn decode(&self, text: &str) -> Option<K> {
        text.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postcard_round_trips_and_rejects_garbage() {
        let v: Vec<(u32, String)> = vec![(1, "a".into()), (300, "bcd".into())];
        let bytes = Postcard.encode(&v).unwrap();
        assert_eq!(
            Codec::<Vec<(u32, String)>>::decode(&Postcard, &bytes).unwrap(),
            v
        );
        assert!(Codec::<String>::decode(&Postcard, &[5, b'a']).is_err());
    }

    #[test]
    fn display_key_round_trips_strings_with_spaces() {
        let codec = DisplayKey;
        let k = "user 42: Ann".to_string();
        assert_eq!(
            KeyCodec::<String>::decode(&codec, &codec.encode(&k)),
            Some(k)
        );
        assert_eq!(KeyCodec::<u8>::decode(&codec, "300"), None);
    }
}
