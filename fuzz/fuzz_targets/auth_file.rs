//! The auth file: any text gives a policy or an error naming what is wrong,
//! never a panic; a loaded policy answers any token and any topic.
#![no_main]

use herald::auth::{self, Action};
use libfuzzer_sys::{arbitrary, fuzz_target};

#[derive(Debug, arbitrary::Arbitrary)]
struct Input<'a> {
    file: &'a str,
    token: &'a str,
    principal: &'a str,
    topic: &'a str,
}

fuzz_target!(|input: Input<'_>| {
    let Ok(policy) = auth::parse_file(input.file, 4) else {
        return;
    };
    // Random bytes are not a valid token (the hashes are 256-bit keyed).
    let _ = policy.authenticate(input.token);
    let p = policy.principal(input.principal);
    for action in Action::ALL {
        let may = p.may(action, input.topic);
        assert!(!may || p.may_see(input.topic));
        assert_eq!(auth::authorize(&p, action, input.topic).is_ok(), may);
    }
    if p.sees_all() {
        assert!(p.may_see(input.topic));
    }
});
