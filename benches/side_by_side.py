"""Side by side: the default bilingual run (`cxreport run --out DIR --as-of …`, the demo
database) with two binaries, alternating OLD, NEW, OLD, NEW … RUNS times, so both see
the same load on a shared machine. Prints, per binary, the medians of CPU time (user +
sys of the run and its worker process, from the kernel's accounting of waited-for
children), wall time, peak RSS and each stage of manifest.json (`cpu_*`: CPU per stage,
where the binary records it), and the ratio new ÷ old of each median; then the charts
and pages of each edition.

    python3 benches/side_by_side.py OLD NEW RUNS WORKDIR
"""
import glob, json, os, resource, statistics, subprocess, sys, time

old, new, runs, work = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
AS_OF = "2024-07-01T08:00:00Z"
env = dict(os.environ, RUST_LOG="warn")


def one(binary, out):
    subprocess.run(["rm", "-rf", out], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    subprocess.run([binary, "run", "--out", out, "--as-of", AS_OF], check=True,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    manifest = json.load(open(glob.glob(f"{out}/*/*/manifest.json")[0]))
    row = {"cpu_ms (user+sys)": cpu * 1e3, "wall_ms": wall * 1e3}
    row.update(manifest["timings_ms"])
    # ru_maxrss of children is the largest of them so far: the manifest's own figure
    # is this run's.
    if "peak_rss_kb" in manifest:
        row["peak_rss_mb"] = manifest["peak_rss_kb"] / 1024
    return row


rows = {"old": [], "new": []}
for i in range(runs):
    for side, binary in (("old", old), ("new", new)):
        rows[side].append(one(binary, f"{work}/side-{side}"))
    print(f"  run {i + 1}/{runs}: old {rows['old'][-1]['cpu_ms (user+sys)']:.0f} ms CPU, "
          f"new {rows['new'][-1]['cpu_ms (user+sys)']:.0f} ms CPU", file=sys.stderr)

keys = list(rows["new"][0])
keys += [k for k in rows["old"][0] if k not in keys]
med = {s: {k: statistics.median(r[k] for r in rows[s] if k in r)
           for k in keys if any(k in r for r in rows[s])} for s in rows}
print(f"== side by side: default bilingual run, {runs} alternating runs, medians")
print(f"   old = {old}\n   new = {new}")
print(f"  {'':<26} {'old':>10} {'new':>10} {'new/old':>8}")
for k in keys:
    o, n = med["old"].get(k), med["new"].get(k)
    ratio = f"{n / o:8.2f}" if o and n is not None else f"{'':>8}"
    fmt = lambda v: f"{v:10.1f}" if v is not None else f"{'-':>10}"
    print(f"  {k:<26} {fmt(o)} {fmt(n)} {ratio}")
try:
    load = open("/proc/loadavg").read().split()[:3]
    print(f"  machine load average (1, 5, 15 min) at the end: {' '.join(load)}, "
          f"{os.cpu_count()} cores")
except OSError:
    pass

for side in ("old", "new"):
    for pdf in sorted(glob.glob(f"{work}/side-{side}/*/*/report.*.pdf")):
        lang = pdf.rsplit(".", 2)[-2]
        charts = len(glob.glob(os.path.join(os.path.dirname(pdf), f"charts/*.{lang}.svg")))
        info = subprocess.run(["pdfinfo", pdf], capture_output=True, text=True).stdout
        pages = next((l.split()[-1] for l in info.splitlines() if l.startswith("Pages:")), "?")
        print(f"  {side} {lang}: {charts} charts, {pages} pages")
