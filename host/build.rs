//! Builds every plugin under `plugins/` for wasm32-wasip2 and embeds the built-in ones.
//!
//! Built-ins are the crates directly under `plugins/` (except `sdk`); their directory name is
//! the name a workflow uses (`plugin = "echo"`). `plugins/examples/*` are built too, and their
//! directory is exported to the tests as `ORCH_EXAMPLE_PLUGINS`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

fn main() {
    // Relative relocations packed (DT_RELR, glibc 2.36+): the loader reads 40 KB instead of
    // 2.9 MB of them at every start, ~1 ms of `orch --version` (BENCHMARKS.md, "The engine at
    // the floor"). The binary stays position-independent: ASLR is worth its page faults.
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let plugins = root.join("plugins");
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("plugins");
    for watched in ["plugins", "wit", "host/templates"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }

    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"));
    // Do not leak the host build's settings into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        build.env_remove(var);
    }
    let status = build.status().expect("run cargo to build plugins");
    assert!(
        status.success(),
        "building plugins/ for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`)"
    );

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
    let mut table = String::from(
        "/// Built-in plugins: (name, component bytes).\npub(crate) static BUILTIN: &[(&str, &[u8])] = &[\n",
    );
    for name in builtin_names(&plugins) {
        let file = format!("orch_{}.wasm", name.replace('-', "_"));
        let embedded = out_dir.join(&file);
        fs::copy(wasm_dir.join(&file), &embedded).expect("copy built plugin");
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            embedded.display().to_string()
        ));
    }
    table.push_str("];\n");
    fs::write(out_dir.join("builtin.rs"), table).expect("write builtin.rs");
    println!(
        "cargo:rustc-env=ORCH_EXAMPLE_PLUGINS={}",
        wasm_dir.display()
    );
    embed_kit(&root, &out_dir);
}

/// The plugin author's kit that `orch plugin new|build` writes out: the WIT, the three SDKs and
/// the scaffolds, as `(path in the kit, bytes)`. Listed here rather than with `include_dir!` so
/// that local build products (node_modules, __pycache__, target) stay out and every file is an
/// `include_bytes!` that cargo tracks.
fn embed_kit(root: &Path, out_dir: &Path) {
    let parts = [
        ("wit", root.join("wit")),
        ("rust", root.join("plugins/sdk")),
        ("python", root.join("plugins/sdk-python")),
        ("js", root.join("plugins/sdk-js")),
        ("templates", root.join("host/templates")),
    ];
    let mut files = Vec::new();
    for (prefix, dir) in &parts {
        collect(dir, Path::new(prefix), &mut files);
    }
    files.sort();
    let mut kit = String::from(
        "/// The plugin author's kit: (path, bytes).\npub(crate) static KIT: &[(&str, &[u8])] = &[\n",
    );
    for (path, source) in files {
        kit.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            path,
            source.display().to_string()
        ));
    }
    kit.push_str("];\n");
    fs::write(out_dir.join("kit.rs"), kit).expect("write kit.rs");
}

/// Files under `dir` (not following links, skipping build products), as (kit path, source).
fn collect(dir: &Path, prefix: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let skip = [
            "node_modules",
            "__pycache__",
            "target",
            "wit",
            "dist",
            "tests",
            "package-lock.json",
        ];
        // Dotfiles (.npmrc, .venv, .pytest_cache) stay out: they may hold credentials and
        // would make the kit depend on a developer's machine. `.gitignore` is scaffold content.
        let hidden = name.starts_with('.') && name != ".gitignore";
        if kind.is_symlink() || hidden || skip.contains(&name.as_str()) {
            continue;
        }
        if name.ends_with(".wasm") || name.ends_with(".pyc") || name.ends_with(".egg-info") {
            continue;
        }
        let path = prefix.join(&name);
        if kind.is_dir() {
            collect(&entry.path(), &path, files);
        } else {
            files.push((path.to_string_lossy().into_owned(), entry.path()));
        }
    }
}

/// Directories directly under plugins/ holding a plugin crate (not the SDK, not examples).
fn builtin_names(plugins: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(plugins)
        .expect("read plugins/")
        .filter_map(Result::ok)
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n != "sdk" && n != "examples")
        .collect();
    names.sort();
    names
}
