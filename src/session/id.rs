//! Session ids: `scene-YYYYMMDD-HHMMSS-xxxxxxxx` (UTC time of creation and eight
//! lowercase hex digits from `rand`). Uniqueness among live and remembered sessions
//! is enforced by the registry, which mints again on a collision.

/// Mints a new id from the current UTC time.
pub fn mint() -> String {
    let now = chrono::Utc::now();
    format!(
        "scene-{}-{:08x}",
        now.format("%Y%m%d-%H%M%S"),
        rand::random::<u32>()
    )
}

/// `true` for strings of the form `^scene-\d{8}-\d{6}-[0-9a-f]{8}$`.
pub fn is_valid(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 30
        && id.starts_with("scene-")
        && b[6..14].iter().all(u8::is_ascii_digit)
        && b[14] == b'-'
        && b[15..21].iter().all(u8::is_ascii_digit)
        && b[21] == b'-'
        && b[22..]
            .iter()
            .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_ids_match_the_pattern_and_differ() {
        let a = mint();
        let b = mint();
        assert!(is_valid(&a), "{a}");
        assert!(is_valid(&b), "{b}");
        assert_ne!(a, b);
        assert!(!is_valid("scene-20260106-101530-A1B2C3D4"));
        assert!(!is_valid("scene-20260106-101530-a1b2c3d"));
        assert!(is_valid("scene-20260106-101530-a1b2c3d4"));
    }
}
