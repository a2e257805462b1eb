"""``report.html``: the demo's run folder as one self-contained page.

No network and no scripts from elsewhere: inline CSS, and relative links to the run folder's
files (videos in ``<video>`` elements, plots and sample sheets in ``<img>``), so the page
works opened straight from disk and moves with its folder.
"""

from __future__ import annotations

import html
from pathlib import Path

from robot_env.io.errors import DeviceError

CSS = """
body { font: 15px/1.5 system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0; color: #1d232a;
       background: #f6f7f9; }
header { background: #1d2b3a; color: #fff; padding: 22px 32px; }
header h1 { margin: 0 0 4px; font-size: 24px; }
header p { margin: 0; opacity: .8; }
main { max-width: 1100px; margin: 0 auto; padding: 12px 24px 48px; }
section { background: #fff; border: 1px solid #e2e5ea; border-radius: 8px; padding: 6px 22px 18px; margin: 18px 0; }
h2 { font-size: 19px; margin: 14px 0 6px; }
h2 small { font-weight: normal; color: #6b7684; font-size: 13px; margin-left: 8px; }
.line { color: #37604a; background: #eef7f1; border-radius: 4px; padding: 4px 10px; display: inline-block; }
table { border-collapse: collapse; margin: 10px 0; font-size: 13.5px; }
th, td { border: 1px solid #dfe3e8; padding: 4px 9px; text-align: left; }
th { background: #f1f3f6; }
img, video { max-width: 100%; border: 1px solid #dfe3e8; border-radius: 4px; margin: 6px 0; background: #000; }
img { background: #fff; }
.figs { display: flex; flex-wrap: wrap; gap: 10px 28px; margin: 8px 0; }
.fig b { display: block; font-size: 20px; }
.fig span { color: #6b7684; font-size: 12.5px; }
pre { background: #0f1720; color: #d7e3f0; padding: 10px 14px; border-radius: 6px; overflow-x: auto; font-size: 13px; }
"""


def _md_table(md: str) -> str:
    """A Markdown pipe table as an HTML table (the demo's tables are simple: no escapes, no spans)."""
    lines = [ln.strip() for ln in md.strip().splitlines() if ln.strip().startswith("|")]
    if len(lines) < 2:
        return f"<pre>{html.escape(md)}</pre>"
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    head, body = cells[0], [r for r in cells[2:]]
    out = ["<table><thead><tr>", *(f"<th>{html.escape(c)}</th>" for c in head), "</tr></thead><tbody>"]
    for row in body:
        out.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figs(pairs: list[tuple[str, str]]) -> str:
    return '<div class="figs">' + "".join(
        f'<div class="fig"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>' for k, v in pairs) + "</div>"


def _img(src: str, alt: str) -> str:
    return f'<img src="{html.escape(src)}" alt="{html.escape(alt)}">'


def _video(src: str) -> str:
    return (f'<video src="{html.escape(src)}" controls loop muted autoplay playsinline preload="auto">'
            f'<a href="{html.escape(src)}">{html.escape(src)}</a></video>')


def _section(title: str, rec: dict | None, body: str, command: str) -> str:
    if rec is None:
        return ""
    took = f"<small>{rec.get('wall_s', 0):.0f} s</small>" if rec.get("wall_s") else ""
    return (f"<section><h2>{html.escape(title)}{took}</h2><p class='line'>{html.escape(rec['line'])}</p>"
            f"{body}<p>At full scale:</p><pre>{html.escape(command)}</pre></section>")


def _mm(y: float) -> str:
    """A distance in the unit that shows it: um, mm or cm."""
    if y < 1e-3:
        return f"{y * 1e6:.1f} um"
    return f"{y * 1000:.1f} mm" if y < 0.1 else f"{y * 100:.1f} cm"


def build(records: dict, quick: bool) -> str:
    parts = []
    r = records.get("envs")
    if r:
        rows = "\n".join(f"| {e['id']} | {e['obs']} | {e['action']} |" for e in r["envs"])
        parts.append(_section("1. The reach environments", r, _md_table(
            "| id | observation shape | action shape |\n|---|---|---|\n" + rows), "armlab envs"))
    r = records.get("cmaes")
    if r:
        figs = _figs([(f"CMA-ES best y, stage {s['stage']}", _mm(s["cmaes_y"])) for s in r["searches"]]
                     + [("zero-signal y, stage fixed", _mm(r["searches"][0]["zero_y"]))])
        parts.append(_section("2. Optimization: try hundreds of x", r, figs + _md_table(r["table"])
                              + _img("landscape.png", "y(x) landscape with the CMA-ES path"),
                              "armlab bench feasibility --robot arm3 --contexts 100 --budget 1500 --json"))
    r = records.get("comparison")
    if r:
        parts.append(_section("3. Optimization vs regression vs RL (velocity stage)", r, _md_table(r["table"])
                              + _img("comparison.png", "final distance against simulated episodes"),
                              "armlab compare --robot arm3 --out runs/compare"))
    r = records.get("video")
    if r:
        parts.append(_section("4. The trained policy on video", r, _video("sac_rollout.webm"),
                              "armlab render --run runs/sac/armlab_ReachSignalVelocity-v0_1 --camera front,top "
                              "--episodes 5 --out rollout.webm"))
    r = records.get("dataset")
    if r:
        c = r["counts"]["sim"]
        figs = _figs([("frames per style", f"{c['frames']:,}"), ("COCO annotations", f"{c['annotations']:,}"),
                      ("files with SHA-256", f"{c['files']:,}")])
        parts.append(_section(
            "5. Synthetic camera dataset (sim and real styles)", r,
            figs + "<p>Top: sim style; bottom: the same scenes in the real-camera style. Boxes from the "
            "segmentation (target red), the target's labelled pixel (green ring), the class above.</p>"
            + _img("dataset_samples.png", "dataset samples with labels"),
            "armlab dataset generate --out data/sim --n 10000 --size 128 --workers 2\n"
            "armlab dataset generate --out data/real --n 10000 --size 128 --workers 2 --style real\n"
            "armlab dataset verify data/sim"))
    r = records.get("sim2real")
    if r:
        figs = _figs([(k, v) for k, v in r.get("figures", {}).items()])
        parts.append(_section(
            "6. Sim-to-real: the look translator, and the camera model it helps", r,
            figs + "<p>Rows: held-out sim frames, translated to the photo camera, the paired real (photo) frame."
            "</p>" + _img("sim2real_samples.png", "look translator translations") + _video("sim2real_rollout.webm")
            + "<p>The same camera model (target position and class) trained on each set, tested on held-out real "
            "frames; one seed at the demo's budget. The full table, three seeds with 95 % intervals, baselines and "
            "the few-labels rows: <code>armlab bench sim2real</code> (docs/benchmarks.md).</p>"
            + _md_table(r.get("table", "")),
            "armlab dataset generate --out data/sim --n 2500 --size 64 --randomize camera,distractors\n"
            "armlab dataset generate --out data/photo --n 2500 --size 64 --randomize camera,distractors "
            "--style photo\n"
            "armlab cyclegan train --sim data/sim --real data/photo --out runs/look --generator look --d-base 16 "
            "--lr 1e-3 --steps 3000 --batch-size 8 --real-limit 300\n"
            "armlab sim2real eval --sim data/sim --real data/photo --run runs/look --json\n"
            "armlab bench sim2real --json"))
    r = records.get("generate")
    if r:
        figs = _figs([(k, v) for k, v in r.get("figures", {}).items()])
        parts.append(_section(
            "7. Generated scenes: conditional GAN and diffusion", r,
            figs + "<p>One row per requested class (cube, cylinder, sphere). "
            + ("The GAN's samples come from the weights shipped in <code>generative/pretrained/cgan64</code> "
               "(their PROVENANCE.json names the commands, the dataset's manifest hash and the metrics); the demo "
               "samples them and does not train a GAN. " if r.get("gan_source") == "pretrained" else
               "The GAN was trained here for the demo's short budget. ")
            + ("The diffusion samples come from the latent diffusion weights shipped in "
               "<code>generative/pretrained/ldm64</code> (UNet and autoencoder, trained on plain sim renders in which "
               "only the camera pose and the distractors vary; the same kind of PROVENANCE.json), "
               "sampled with DDIM and classifier-free guidance; nothing is trained here.</p>"
               if r.get("diffusion_source") == "pretrained" else
               "The diffusion model is trained here for the demo's short CPU budget.</p>")
            + "".join(_img(f, f.split("_")[0] + " samples") for f in r["files"]
                      if f.endswith(".png") and not f.startswith("latent/"))
            + ("<p>Samples from a prompt, one row per sentence: "
               + "; ".join(f"<q>{html.escape(t)}</q>" for t in r["prompts"])
               + ". The diffusion model has no text encoder: the class and the side a sentence names are read from "
               "its words (<code>generative.text.caption_conditions</code>), and each image's target position is "
               "drawn from the dataset's frames of that class on that side. The learned text models (<code>armlab "
               "stackgan</code>, <code>armlab diffusion train --cond text</code>) do not follow a prompt reliably "
               "yet on CPU budgets (docs/benchmarks.md).</p>" if r.get("prompts") else "")
            + ("<p>The lecture's latent space: the GAN's generator walked along great circles between random "
               "points of z (slerp), one condition held; the truncation grid scales z.</p>"
               + _video("latent/interp_z.webm") + _img("latent/truncation.png", "truncation grid")
               if "latent/interp_z.webm" in r["files"] else ""),
            "armlab gan train --data data/sim --out runs/gan --steps 20000 --cond class,target\n"
            "armlab gan eval --run runs/gan --data data/sim --json\n"
            "armlab diffusion train --data data/sim --out runs/ldm --latent --cond class,target --steps 20000\n"
            "armlab diffusion eval --run runs/ldm --data data/sim --json"))
    scale = "quick run (<code>armlab demo --quick</code>)" if quick else "full demo (<code>make demo</code>)"
    total = sum(r.get("wall_s", 0) for r in records.values())
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>armlab demo report</title>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'><style>{CSS}</style></head><body>"
            f"<header><h1>armlab demo report</h1><p>The lecture's reaching problem, controllers compared, a policy "
            f"on video, synthetic camera data, sim-to-real translation and generated scenes — {scale}, "
            f"{total:.0f} s of stage time.</p></header><main>{''.join(parts)}</main></body></html>\n")


def write_report(out: Path, records: dict, quick: bool = False) -> Path:
    from armlab_scripts._common import atomic_write_text

    path = Path(out) / "report.html"
    atomic_write_text(path, build(records, quick))
    return path


def chromium_path() -> str | None:
    """The system Chromium (Debian's ``chromium`` package), if installed."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def browser_check(report: Path, screenshot: Path | None = None, timeout_s: float = 30.0) -> dict:
    """Open ``report`` from disk in headless Chromium (through Playwright, with the system
    browser: nothing is downloaded) and return what a person would see go wrong: videos
    that never reach ``readyState >= 2`` or have no duration, images that did not load,
    console errors and failed requests. Saves a full-page screenshot when asked."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    if exe is None:
        raise DeviceError("no Chromium found; install Debian's `chromium` package (apt-get install chromium).")
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe,
                                     args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed to load {r.url}"))
            page.goto(Path(report).resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "() => [...document.querySelectorAll('video')].every(v => v.readyState >= 2 && v.duration > 0)",
                timeout=timeout_s * 1000)
            state = page.evaluate("""() => ({
                videos: [...document.querySelectorAll('video')].map(v => ({src: v.getAttribute('src'),
                         readyState: v.readyState, duration: v.duration, width: v.videoWidth})),
                images: [...document.querySelectorAll('img')].map(i => ({src: i.getAttribute('src'),
                         complete: i.complete, naturalWidth: i.naturalWidth})),
                sections: document.querySelectorAll('section').length})""")
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {**state, "console_errors": errors}
