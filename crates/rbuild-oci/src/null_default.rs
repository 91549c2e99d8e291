//! Docker writes `null` for empty lists and maps (`"Env": null`, `"Labels": null`); this reads
//! such a `null` as the empty value instead of failing.

use serde::{Deserialize, Deserializer};

/// Deserializes `T`, reading `null` as `T::default()`.
pub(crate) fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}
