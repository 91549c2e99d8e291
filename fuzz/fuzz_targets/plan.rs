//! Parse + plan arbitrary text: no panic, no hang, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rbuild_oci::Platform;
use rbuild_plan::{plan, OfflineResolver, PlanOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(dockerfile) = rbuild_dockerfile::parse(text) else {
        return;
    };
    let mut options = PlanOptions {
        build_platform: Platform::new("linux", "amd64", None),
        ..PlanOptions::default()
    };
    options.build_args.insert("A".into(), "1".into());
    let _ = plan(&dockerfile, &options, &OfflineResolver);
    // Every stage as the target too: pruning and dependency checks per target.
    for stage in &dockerfile.stages {
        if let Some(name) = &stage.from.name {
            options.target = Some(name.clone());
            let _ = plan(&dockerfile, &options, &OfflineResolver);
        }
    }
});
