//! Framing of JSON values on byte streams: one incremental scanner, used by every socket the
//! manager reads, that cuts bytes into JSON values with a stream or NDJSON newline policy.
pub mod json_frame_codec;
pub use json_frame_codec::*;
