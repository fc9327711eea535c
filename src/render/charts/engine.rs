//! The chart engine: ECharts (taken from the charming crate's sources at build time)
//! running in an embedded QuickJS, rendering options to SVG with its server-side
//! renderer. One engine per process with [`MAX_WORKERS`] JavaScript runtimes (one):
//! each worker thread owns a runtime, loads ECharts once, and takes the next render
//! request from a queue any thread feeds, so both editions share it (measured with
//! `benches/run.sh`).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rquickjs::{qjs, CatchResultExt, Context, Ctx, Function, Runtime};

use crate::clock::{thread_cpu, Deadline};

const ECHARTS: &str = include_str!(concat!(env!("OUT_DIR"), "/echarts.min.js"));
/// [`ECHARTS`] compiled to QuickJS bytecode by build.rs: loading it skips parsing the
/// script (most of the engine's start).
const ECHARTS_BYTECODE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/echarts.qjsbc"));
pub const ECHARTS_VERSION: &str = env!("CXREPORT_ECHARTS_VERSION");

/// What ECharts needs from a browser-less global scope, and the render entry point.
const PRELUDE: &str = r#"
globalThis.console = { log() {}, warn() {}, error() {}, info() {}, debug() {} };
globalThis.setTimeout = function () { return 0; };
globalThis.clearTimeout = function () {};
"#;
const RENDER_FN: &str = r#"
// An axis label formatter written "\u0001<zero>\u0001<mask>" (charts::money_axis): the
// zero tick as the text prints zero ("$0", not "$0k"), every other tick by the mask.
function __cxZeroTicks(option) {
    ['xAxis', 'yAxis'].forEach(function (key) {
        [].concat(option[key] || []).forEach(function (axis) {
            var label = axis && axis.axisLabel, f = label && label.formatter;
            if (typeof f !== 'string' || f.charAt(0) !== '\u0001') return;
            var parts = f.split('\u0001');
            label.formatter = function (v) {
                return v === 0 ? parts[1] : parts[2].replace('{value}', echarts.format.addCommas(v));
            };
        });
    });
    return option;
}
globalThis.__cxRender = function (optionJson, width, height) {
    var chart = echarts.init(null, null, { renderer: 'svg', ssr: true, width: width, height: height });
    try {
        chart.setOption(__cxZeroTicks(JSON.parse(optionJson)));
        // Class, clip-path and gradient names carry counters global to the engine,
        // which depend on what it drew before (both editions share it, in parallel):
        // number them by first use in this SVG, so a rerun gives the same bytes.
        var names = {}, next = 0;
        return chart.renderToSVGString().replace(/([#. "])(zr\d+-[\w-]+)/g, function (m, lead, name) {
            if (!(name in names)) names[name] = 'zr0-' + (next++);
            return lead + names[name];
        });
    } finally {
        chart.dispose();
    }
};
"#;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    #[error("the chart engine could not start: {0}")]
    Start(String),
    #[error("rendering chart `{chart}`: {message}")]
    Render { chart: String, message: String },
    #[error("the chart engine stopped")]
    Stopped,
    #[error("rendering chart `{chart}` was stopped at the run's time limit of {secs} s (defaults.run_timeout_secs)")]
    Deadline { chart: String, secs: u64 },
}

impl crate::exit::Classify for EngineError {
    /// Charts are built in: one that does not render is a failed run.
    fn exit(&self) -> crate::exit::Exit {
        match self {
            Self::Start(_) | Self::Render { .. } | Self::Stopped | Self::Deadline { .. } => {
                crate::exit::Exit::Failed
            }
        }
    }
}

struct Request {
    name: String,
    option_json: String,
    width: u32,
    height: u32,
    deadline: Option<Deadline>,
    reply: mpsc::Sender<Result<(String, Rendered), EngineError>>,
}

/// What rendering one chart cost the engine (not counting the wait for other callers).
#[derive(Debug, Clone, Copy, Default)]
pub struct Rendered {
    pub wall: Duration,
    /// CPU time of the engine's thread.
    pub cpu: Duration,
}

/// Runtimes at most. One: while one edition's charts render, the other edition's
/// Typst layout has the second core, and each runtime holds its own ECharts (tens of
/// MB). Loading it from bytecode costs about 10 ms of CPU (benches/run.sh:
/// `cpu_chart_engine_start`; parsing the script cost 120–140): a second runtime
/// would now cost memory more than CPU (re-measure wall time on a quiet machine).
pub const MAX_WORKERS: usize = 1;

/// Handle to the process's chart engine.
pub struct Engine {
    tx: Mutex<mpsc::Sender<Request>>,
    /// How long loading ECharts took (the workers load side by side).
    pub startup: Duration,
    /// The CPU time the workers spent loading it, all together.
    pub startup_cpu: Duration,
    /// Runtimes serving requests.
    pub workers: usize,
}

static ENGINE: OnceLock<Result<Engine, EngineError>> = OnceLock::new();

/// The process's engine, started on first use.
pub fn engine() -> Result<&'static Engine, EngineError> {
    ENGINE
        .get_or_init(Engine::start)
        .as_ref()
        .map_err(Clone::clone)
}

impl Engine {
    fn start() -> Result<Self, EngineError> {
        let started = Instant::now();
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_WORKERS);
        let (tx, rx) = mpsc::channel::<Request>();
        let rx = Arc::new(Mutex::new(rx));
        let (ready_tx, ready_rx) = mpsc::channel::<Result<Duration, EngineError>>();
        for i in 0..workers {
            let (rx, ready) = (Arc::clone(&rx), ready_tx.clone());
            std::thread::Builder::new()
                .name(format!("chart-engine-{i}"))
                .stack_size(16 << 20)
                .spawn(move || serve(&rx, ready))
                .map_err(|e| EngineError::Start(e.to_string()))?;
        }
        drop(ready_tx);
        // Every runtime must load: a failure is the same failure on each.
        let mut startup_cpu = Duration::ZERO;
        for _ in 0..workers {
            startup_cpu += ready_rx.recv().map_err(|_| EngineError::Stopped)??;
        }
        Ok(Self {
            tx: Mutex::new(tx),
            startup: started.elapsed(),
            startup_cpu,
            workers,
        })
    }

    /// Renders an ECharts option (JSON) to an SVG document.
    pub fn render(
        &self,
        name: &str,
        option_json: String,
        width: u32,
        height: u32,
    ) -> Result<String, EngineError> {
        self.render_timed(name, option_json, width, height, None)
            .map(|(svg, _)| svg)
    }

    /// [`Engine::render`], also returning what it cost the engine.
    pub fn render_timed(
        &self,
        name: &str,
        option_json: String,
        width: u32,
        height: u32,
        deadline: Option<Deadline>,
    ) -> Result<(String, Rendered), EngineError> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .lock()
            .map_err(|_| EngineError::Stopped)?
            .send(Request {
                name: name.to_owned(),
                option_json,
                width,
                height,
                deadline,
                reply,
            })
            .map_err(|_| EngineError::Stopped)?;
        rx.recv().map_err(|_| EngineError::Stopped)?
    }
}

/// Reads a global script's bytecode (`JS_ReadObject`, which checks that the format is
/// this QuickJS version's) and runs it (`JS_EvalFunction`). An error leaves nothing
/// run: reading fails before any of it executes.
fn run_bytecode(ctx: &Ctx<'_>, bytecode: &[u8]) -> Result<(), String> {
    let raw = ctx.as_raw().as_ptr();
    // SAFETY: `bytecode` is what build.rs wrote with JS_WriteObject of the same
    // rquickjs-sys (Cargo.lock pins one version for both), read with the
    // bytecode flag on this thread's context; JS_EvalFunction takes ownership of
    // the function read, and the value it returns is owned by `Value` and freed
    // when dropped.
    unsafe {
        let func = qjs::JS_ReadObject(
            raw,
            bytecode.as_ptr(),
            bytecode.len() as _,
            qjs::JS_READ_OBJ_BYTECODE as i32,
        );
        if qjs::JS_IsException(func) {
            return Err::<(), _>(rquickjs::Error::Exception)
                .catch(ctx)
                .map_err(|e| format!("reading the bytecode: {e}"));
        }
        let result = qjs::JS_EvalFunction(raw, func);
        if qjs::JS_IsException(result) {
            return Err::<(), _>(rquickjs::Error::Exception)
                .catch(ctx)
                .map_err(|e| format!("running the bytecode: {e}"));
        }
        drop(rquickjs::Value::from_raw(ctx.clone(), result));
    }
    Ok(())
}

fn serve(rx: &Mutex<mpsc::Receiver<Request>>, ready: mpsc::Sender<Result<Duration, EngineError>>) {
    let setup = || -> Result<(Runtime, Context), String> {
        let rt = Runtime::new().map_err(|e| e.to_string())?;
        rt.set_max_stack_size(8 << 20);
        rt.set_memory_limit(512 << 20);
        let ctx = Context::full(&rt).map_err(|e| e.to_string())?;
        ctx.with(|ctx| -> Result<(), String> {
            let eval = |what: &str, src: &str| {
                ctx.eval::<(), _>(src)
                    .catch(&ctx)
                    .map_err(|e| format!("loading {what}: {e}"))
            };
            eval("prelude", PRELUDE)?;
            if let Err(e) = run_bytecode(&ctx, ECHARTS_BYTECODE) {
                tracing::warn!("the ECharts bytecode did not load ({e}): parsing the script");
                eval("ECharts", ECHARTS)?;
            }
            eval("render entry", RENDER_FN)
        })?;
        Ok((rt, ctx))
    };
    // The interrupt handler stops a script past the current request's deadline (a
    // pathological chart must not stall every job).
    let current: Arc<Mutex<Option<Deadline>>> = Arc::default();
    let (_rt, ctx) = match setup() {
        Ok(v) => {
            let watched = Arc::clone(&current);
            v.0.set_interrupt_handler(Some(Box::new(move || {
                watched
                    .lock()
                    .map(|d| d.is_some_and(|d| d.passed()))
                    .unwrap_or(false)
            })));
            let _ = ready.send(Ok(thread_cpu().unwrap_or_default()));
            v
        }
        Err(e) => {
            let _ = ready.send(Err(EngineError::Start(e)));
            return;
        }
    };
    loop {
        // The lock is held only while waiting for the next request, not while
        // rendering it: an idle worker takes whatever comes next.
        let next = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(req) = next else { return };
        let started = Instant::now();
        let cpu_before = thread_cpu().unwrap_or_default();
        if let Ok(mut d) = current.lock() {
            *d = req.deadline;
        }
        let result = ctx.with(|ctx| -> Result<String, EngineError> {
            let err = |message: String| EngineError::Render {
                chart: req.name.clone(),
                message,
            };
            let f: Function = ctx
                .globals()
                .get("__cxRender")
                .map_err(|e| err(e.to_string()))?;
            f.call((req.option_json.as_str(), req.width, req.height))
                .catch(&ctx)
                .map_err(|e| err(e.to_string()))
        });
        let result = match (result, req.deadline) {
            (Err(_), Some(d)) if d.passed() => Err(EngineError::Deadline {
                chart: req.name.clone(),
                secs: d.budget.as_secs(),
            }),
            (r, _) => r,
        };
        if let Ok(mut d) = current.lock() {
            *d = None;
        }
        let cost = Rendered {
            wall: started.elapsed(),
            cpu: thread_cpu().unwrap_or_default().saturating_sub(cpu_before),
        };
        let _ = req.reply.send(result.map(|svg| (svg, cost)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echarts_bytecode_loads_and_defines_echarts() {
        let rt = Runtime::new().unwrap();
        let ctx = Context::full(&rt).unwrap();
        ctx.with(|ctx| {
            ctx.eval::<(), _>(PRELUDE).unwrap();
            run_bytecode(&ctx, ECHARTS_BYTECODE).unwrap();
            let version: String = ctx.eval("echarts.version").unwrap();
            assert_eq!(version, ECHARTS_VERSION);
            // Bytes that are not bytecode are refused before anything runs.
            let err = run_bytecode(&ctx, b"not bytecode").unwrap_err();
            assert!(err.contains("reading the bytecode"), "{err}");
        });
    }

    #[test]
    fn the_same_chart_gives_the_same_bytes_whatever_came_before() {
        let e = engine().unwrap();
        let option = r#"{"animation":false,"xAxis":{"type":"category","data":["a","b"]},"yAxis":{"type":"value"},"series":[{"type":"bar","data":[1,2]}]}"#;
        let first = e.render("a", option.into(), 400, 300).unwrap();
        let second = e.render("a", option.into(), 400, 300).unwrap();
        assert_eq!(first, second);
        assert!(
            first.contains("zr0-"),
            "instance-numbered names are normalized"
        );
    }

    #[test]
    fn renders_an_svg_with_its_labels_and_reports_bad_options() {
        let e = engine().unwrap();
        let svg = e
            .render(
                "t",
                r#"{"animation":false,"xAxis":{"type":"category","data":["甲","beta"]},"yAxis":{"type":"value"},"series":[{"type":"bar","data":[1,2]}]}"#.into(),
                400,
                300,
            )
            .unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.contains("甲") && svg.contains("beta"));
        assert!(svg.contains("<path"));
        let err = e
            .render("broken", "{not json".into(), 400, 300)
            .unwrap_err();
        assert!(
            matches!(err, EngineError::Render { ref chart, .. } if chart == "broken"),
            "{err}"
        );
        // The engine survives a failed render.
        assert!(e
            .render("again", r#"{"series":[]}"#.into(), 100, 100)
            .is_ok());
    }

    #[test]
    fn a_chart_past_the_deadline_is_stopped_with_a_clear_error() {
        let e = engine().unwrap();
        // Heavy enough that QuickJS asks the interrupt handler many times.
        let data: Vec<String> = (0..20_000).map(|i| i.to_string()).collect();
        let option = format!(
            r#"{{"animation":false,"xAxis":{{"type":"category","data":[{}]}},"yAxis":{{"type":"value"}},"series":[{{"type":"line","data":[{}]}}]}}"#,
            data.join(","),
            data.join(",")
        );
        let passed = Deadline {
            at: Instant::now(),
            budget: Duration::from_secs(7),
        };
        let err = e
            .render_timed("slow", option, 600, 400, Some(passed))
            .unwrap_err();
        assert_eq!(
            err,
            EngineError::Deadline {
                chart: "slow".into(),
                secs: 7
            }
        );
        assert!(err.to_string().contains("run_timeout_secs"), "{err}");
        // The runtime is still usable afterwards.
        let ok = r#"{"animation":false,"xAxis":{"type":"category","data":["a"]},"yAxis":{"type":"value"},"series":[{"type":"bar","data":[1]}]}"#;
        assert!(e.render("after", ok.into(), 300, 200).is_ok());
        assert!(e.render("after2", ok.into(), 300, 200).is_ok());
    }
}
