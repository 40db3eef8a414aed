//! Builds the shipped policies as components for wasm32-wasip2, as wasmtime's own
//! test-programs crate builds its guests: a nested cargo into a target dir of its own
//! (the outer build holds the lock on the usual one), one invocation per policy so that
//! cargo does not unify their features.
//!
//! Outputs `<target>/policies/{default,auto-accept,misbehaving}.wasm`, and
//! `$OUT_DIR/default.wasm`, which the binary embeds as its default policy.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (cargo package, output name)
const POLICIES: &[(&str, &str)] = &[
    ("default-policy", "default"),
    ("auto-accept-policy", "auto-accept"),
    ("misbehaving-policy", "misbehaving"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.parent().unwrap().to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let target_dir = if target_dir.is_relative() {
        workspace.join(target_dir)
    } else {
        target_dir
    };
    let inner_target = target_dir.join("wasm-policies");
    let policies_dir = target_dir.join("policies");
    std::fs::create_dir_all(&policies_dir).unwrap();
    // Where the tests find the components (`env!("IWF_POLICIES_DIR")`): the directory
    // written here, whatever CARGO_TARGET_DIR the build had.
    println!(
        "cargo:rustc-env=IWF_POLICIES_DIR={}",
        policies_dir.display()
    );

    // Only what the Rust policies are built from: the Python and JavaScript policies
    // (and their node_modules) are built by `policies/build.sh`, not here.
    let rust_policy_dirs = POLICIES
        .iter()
        .map(|(package, _)| format!("policies/{}", package.trim_end_matches("-policy")));
    for dir in ["wit", "policy-sdk", "Cargo.lock"]
        .into_iter()
        .map(String::from)
        .chain(rust_policy_dirs)
    {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    ensure_wasm_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, name) in POLICIES {
        build_policy(&cargo, &workspace, &inner_target, package);
        let built = inner_target
            .join("wasm32-wasip2/policy")
            .join(format!("{}.wasm", package.replace('-', "_")));
        let dest = policies_dir.join(format!("{name}.wasm"));
        copy_if_changed(&built, &dest);
        if *name == "default" {
            copy_if_changed(&built, &out_dir.join("default.wasm"));
        }
    }
}

/// The target the policies are built for.
const WASM_TARGET: &str = "wasm32-wasip2";

/// Makes sure the toolchain building us has the wasm32-wasip2 standard library.
///
/// `rust-toolchain.toml` lists the target, but rustup (1.28, 1.29) adds a toolchain file's
/// `targets` only when it installs the toolchain, not to one already installed: on such a
/// machine `cargo run` would fail here with "can't find crate for `core`". So the build
/// adds it itself when rustup manages the toolchain (saying so), and otherwise stops with
/// the one command to run. Adding a target is what the toolchain file asks for anyway, and
/// keeps the embedded policy built from source instead of a committed binary.
fn ensure_wasm_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    let installed = |sysroot: &Option<PathBuf>| {
        sysroot.as_ref().is_some_and(|root| {
            root.join("lib/rustlib")
                .join(WASM_TARGET)
                .join("lib")
                .is_dir()
        })
    };
    if installed(&sysroot) {
        return;
    }
    // The toolchain cargo runs us with (rustup's proxies set RUSTUP_TOOLCHAIN).
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", WASM_TARGET]);
    if let Some(toolchain) = &toolchain {
        rustup.args(["--toolchain", toolchain]);
    }
    let hint = match &toolchain {
        Some(t) => format!("rustup target add {WASM_TARGET} --toolchain {t}"),
        None => format!("rustup target add {WASM_TARGET}"),
    };
    println!(
        "cargo:warning=the {WASM_TARGET} target (for the shipped policies) is missing: running `{hint}`"
    );
    match rustup.status() {
        Ok(status) if status.success() && installed(&sysroot) => {}
        Ok(status) => panic!(
            "`{hint}` did not install the {WASM_TARGET} target ({status}); install it and build again"
        ),
        Err(e) => panic!(
            "the {WASM_TARGET} target is not installed and rustup cannot be run ({e}): install it with `{hint}`, or use a toolchain that has it"
        ),
    }
}

fn build_policy(cargo: &str, workspace: &Path, inner_target: &Path, package: &str) {
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args([
            "build",
            "--quiet",
            "--target",
            WASM_TARGET,
            "--profile",
            "policy",
            "-p",
            package,
        ])
        .arg("--target-dir")
        .arg(inner_target)
        // What the outer build set for its own target must not leak into this one.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        // A 64 KiB guest stack (instead of 1 MiB): a decision needs little, and every
        // page of stack is memory the pooling allocator resets after each instance.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-zstack-size=65536");
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        status.success(),
        "building policy `{package}` for {WASM_TARGET} failed (see the errors above)"
    );
}

fn copy_if_changed(from: &Path, to: &Path) {
    let new = std::fs::read(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if std::fs::read(to).ok().as_deref() != Some(&new[..]) {
        std::fs::write(to, &new).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    }
}
