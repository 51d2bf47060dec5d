#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    blender_session_manager_fuzz::blender_reply(data);
});
