//! Finds the ECharts script inside the charming crate's packaged sources (no committed
//! third-party JavaScript, no network), copies it to OUT_DIR for `include_str!` and
//! compiles it there to QuickJS bytecode (`echarts.qjsbc`, with the same QuickJS the
//! binary links: rquickjs-sys of the lock file), so a process loads ECharts without
//! parsing it; lists every file under `templates/` for embedding.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    embed_templates();
    let manifest = charming_manifest();
    let assets = manifest.parent().expect("crate dir").join("src/asset");
    let script = std::fs::read_dir(&assets)
        .expect("charming's asset directory")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.starts_with("echarts-") && name.ends_with(".min.js")
        })
        .expect("an echarts-*.min.js in charming's assets");
    println!("cargo:rerun-if-changed={}", script.display());
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("echarts.min.js");
    std::fs::copy(&script, &dest).expect("copying the ECharts script");
    let source = std::fs::read(&script).expect("reading the ECharts script");
    let bytecode = compile_to_bytecode(&source, "echarts.min.js");
    std::fs::write(dest.with_file_name("echarts.qjsbc"), bytecode)
        .expect("writing the ECharts bytecode");
    let version = script
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("echarts-"))
        .and_then(|n| n.strip_suffix(".min.js"))
        .unwrap_or("unknown")
        .to_owned();
    println!("cargo:rustc-env=CXREPORT_ECHARTS_VERSION={version}");
}

/// `source` (a global script) compiled by QuickJS, not run, and serialized as bytecode
/// (`JS_WriteObject`); the source text of its functions is left out (nothing reads it:
/// `Function.prototype.toString` of ECharts' own functions), line numbers are kept for
/// error messages. The binary reads it back with `JS_ReadObject` of the same QuickJS
/// version, which checks the format's version; it falls back to the script when that
/// fails.
fn compile_to_bytecode(source: &[u8], name: &str) -> Vec<u8> {
    use rquickjs_sys as q;
    use std::ffi::CString;
    let src = CString::new(source).expect("the script holds no NUL byte");
    let file = CString::new(name).expect("a file name without NUL");
    // SAFETY: a runtime and context of our own, freed at the end; the input is
    // NUL-terminated as JS_Eval requires; the written buffer is copied before it is
    // freed with the context's allocator.
    unsafe {
        let rt = q::JS_NewRuntime();
        assert!(!rt.is_null(), "QuickJS runtime");
        let ctx = q::JS_NewContext(rt);
        assert!(!ctx.is_null(), "QuickJS context");
        // Strict, as the engine evaluated the script before (rquickjs' default).
        let flags =
            (q::JS_EVAL_TYPE_GLOBAL | q::JS_EVAL_FLAG_STRICT | q::JS_EVAL_FLAG_COMPILE_ONLY) as i32;
        let func = q::JS_Eval(ctx, src.as_ptr(), source.len() as _, file.as_ptr(), flags);
        assert!(!q::JS_IsException(func), "QuickJS could not compile {name}");
        let mut len = 0;
        let flags = (q::JS_WRITE_OBJ_BYTECODE | q::JS_WRITE_OBJ_STRIP_SOURCE) as i32;
        let buf = q::JS_WriteObject(ctx, &mut len, func, flags);
        assert!(
            !buf.is_null(),
            "QuickJS could not write the bytecode of {name}"
        );
        let bytes = std::slice::from_raw_parts(buf, len as usize).to_vec();
        q::js_free(ctx, buf.cast());
        q::JS_FreeValue(ctx, func);
        q::JS_FreeContext(ctx);
        q::JS_FreeRuntime(rt);
        bytes
    }
}

/// The charming crate's `Cargo.toml`.
///
/// `cargo metadata --offline` knows where any source lives (registry, vendored, git),
/// but it wants every package of the lock file on disk, dev-dependencies included: on a
/// fresh machine, `cargo build` fetches only what the build needs and metadata fails
/// (`failed to download aes`, a dependency of a test-only crate). Cargo has fetched
/// charming before running this script, so the fallback finds the version the lock
/// file names in the registry's unpacked sources.
fn charming_manifest() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &target,
        ])
        .current_dir(&manifest_dir)
        .output()
        .expect("running cargo metadata");
    if out.status.success() {
        let meta: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
        let charming = meta["packages"]
            .as_array()
            .expect("packages")
            .iter()
            .find(|p| p["name"] == "charming")
            .expect("charming is a dependency");
        return PathBuf::from(charming["manifest_path"].as_str().expect("manifest_path"));
    }
    let metadata_err = String::from_utf8_lossy(&out.stderr).into_owned();
    let version = locked_version(&manifest_dir.join("Cargo.lock"), "charming");
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let registry = cargo_home.join("registry").join("src");
    let found = version.as_deref().and_then(|v| {
        std::fs::read_dir(&registry)
            .ok()?
            .filter_map(Result::ok)
            .map(|index| {
                index
                    .path()
                    .join(format!("charming-{v}"))
                    .join("Cargo.toml")
            })
            .find(|m| m.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "cannot find the charming crate's sources: cargo metadata failed ({}) and \
             {} holds no charming-{} (version from Cargo.lock)",
            metadata_err.trim(),
            registry.display(),
            version.as_deref().unwrap_or("?")
        )
    })
}

/// The version `Cargo.lock` pins for package `name` (the first entry of that name).
fn locked_version(lock: &std::path::Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("name = \"{name}\"") {
            let next = lines.next()?.trim();
            return next
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned);
        }
    }
    None
}

/// Writes `templates.rs`: a `&[(path, include_str!(…))]` of every file under
/// `templates/`, sorted, paths relative to that folder with `/` separators.
fn embed_templates() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        println!("cargo:rerun-if-changed={}", dir.display());
        for entry in std::fs::read_dir(&dir).expect("reading templates/") {
            let path = entry.expect("a templates/ entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = String::from("&[\n");
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .expect("under templates/")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        out.push_str(&format!(
            "    ({rel:?}, include_str!({:?})),\n",
            f.display().to_string()
        ));
    }
    out.push(']');
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("templates.rs");
    std::fs::write(dest, out).expect("writing templates.rs");
}
