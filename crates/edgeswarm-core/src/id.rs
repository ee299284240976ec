//! Record ids. Every record carries a client-generated id so that a retried write is
//! idempotent: the store ignores a second insert with the same id.

/// A new UUIDv7 as a lowercase hyphenated string. UUIDv7 is time-ordered, so ids
/// generated in sequence land next to each other in the primary-key b-tree (cheap
/// appends instead of random page splits).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let a = new_id();
        let b = new_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        // Same millisecond or later: the string order follows creation order for v7
        // when the timestamp differs; at minimum the version nibble is 7.
        assert_eq!(&a[14..15], "7");
    }
}
