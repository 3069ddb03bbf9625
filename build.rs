//! Turns what nginx-sys learnt of the nginx we build against (version,
//! configure features) into cfgs, so version-specific fields can be gated.
use std::env;

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES_CHECK");
    println!(
        "cargo::rustc-check-cfg=cfg(ngx_feature, values({}))",
        env::var("DEP_NGINX_FEATURES_CHECK").unwrap_or("any()".to_string())
    );
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    if let Ok(features) = env::var("DEP_NGINX_FEATURES") {
        for feature in features.split(',').map(str::trim) {
            println!("cargo::rustc-cfg=ngx_feature=\"{feature}\"");
        }
    }

    // nginx 1.23.0 added `ngx_table_elt_t.next` (header lists).
    const VERSION_CHECKS: &[(u64, &str)] = &[(1_023_000, "ngx_table_elt_next")];
    for (_, cfg) in VERSION_CHECKS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    println!("cargo::rerun-if-env-changed=DEP_NGINX_VERSION_NUMBER");
    if let Ok(version) = env::var("DEP_NGINX_VERSION_NUMBER") {
        let version: u64 = version.parse().unwrap_or(0);
        for (min, cfg) in VERSION_CHECKS {
            if version >= *min {
                println!("cargo::rustc-cfg={cfg}");
            }
        }
    }
}
