// The touch screen: one task per screen, big buttons, the prompt spoken aloud. It shows what
// the session says and sends only the citizen's touches.
"use strict";
const $ = (id) => document.getElementById(id);
let catalogue = { centres: [], matters: [] };
let lastSpoken = null;

async function post(event, data = {}) {
  const r = await fetch("/api/event", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ event, data }) });
  render(await r.json());
}

function button(label, onClick, cls = "") {
  const b = document.createElement("button"); b.textContent = label; b.className = cls; b.onclick = onClick; return b;
}

function speak(screen) {
  const key = screen.still_there ? "still_there" : screen.state;
  if (key === lastSpoken) return;
  lastSpoken = key;
  const voice = $("voice");
  voice.src = `/api/speech/${key}.wav`;
  voice.play().catch(() => {
    if ("speechSynthesis" in window) { const u = new SpeechSynthesisUtterance(screen.prompt); u.lang = "zh-CN"; speechSynthesis.speak(u); }
  });
}

function minutes(s) { return s ? `约 ${Math.max(1, Math.round(s / 60))} 分钟` : ""; }

function render(screen) {
  document.body.dataset.state = screen.state;
  $("prompt").textContent = screen.prompt;
  const choices = $("choices"), actions = $("actions"), detail = $("detail");
  choices.innerHTML = ""; actions.innerHTML = ""; detail.textContent = "";
  $("progress").textContent = screen.steps ? `第 ${screen.step} / ${screen.steps} 份材料` : "";
  if (screen.still_there) { actions.appendChild(button("我还在", () => post("still_here"))); speak(screen); return; }
  switch (screen.state) {
    case "idle": actions.appendChild(button("开始办理", () => post("touch"))); break;
    case "choose_centre": for (const c of catalogue.centres) choices.appendChild(button(`${c.province} ${c.name}`, () => post("choose_centre", { centre: c.code }))); break;
    case "choose_matter": for (const m of catalogue.matters.filter((x) => x.centres.includes(screen.centre))) {
        choices.appendChild(button(m.name, () => post("choose_matter", { matter: m.code })));
        if (m.proxy) choices.appendChild(button(`为家人代办：${m.name}`, () => post("choose_matter", { matter: m.code, by_proxy: true }), "secondary"));
      } break;
    case "read_card": detail.textContent = "身份证放好后请不要移动"; break;
    case "verify_face": detail.textContent = "请按屏幕提示转头"; actions.appendChild(button("再试一次", () => post("retake"), "secondary")); break;
    case "capture":
      detail.textContent = `${screen.material}${screen.key ? "" : "（可以稍后补交）"}${screen.card ? "：正面拍完请翻到背面" : ""}`;
      actions.appendChild(button("这份拍好了", () => post("done")));
      actions.appendChild(button("重拍", () => post("retake"), "secondary"));
      if (!screen.key) actions.appendChild(button("没有这份，跳过", () => post("skip"), "secondary"));
      break;
    case "waiting": detail.innerHTML = ""; { const p = document.createElement("div"); p.className = "big"; p.textContent = screen.position ? `前面还有 ${screen.position - 1} 人` : "正在排队"; detail.appendChild(p); const w = document.createElement("div"); w.textContent = minutes(screen.expected_wait_s); detail.appendChild(w); } break;
    case "closed": detail.textContent = screen.next_opening ? `下次办理时间：${screen.next_opening.slice(0, 16).replace("T", " ")}` : "暂时无人值守"; break;
    case "result": { const r = screen.receipt || {}; detail.textContent = `受理编号：${r.case_number || "—"}`; actions.appendChild(button("办好了", () => post("finish"))); } break;
    case "device_fault": detail.textContent = "请联系现场工作人员"; break;
    case "hub_unreachable": detail.textContent = "请稍候，不需要重新办理"; break;
  }
  $("back").hidden = ["idle", "waiting", "in_call", "result", "request"].includes(screen.state);
  $("cancel").hidden = screen.state === "idle";
  speak(screen);
}

async function refresh() {
  try { render(await (await fetch("/api/screen")).json()); } catch (e) { /* the service restarts */ }
}

$("back").onclick = () => post("back");
$("cancel").onclick = () => post("cancel");
document.body.addEventListener("click", () => fetch("/api/screen"), { passive: true });
(async () => {
  catalogue = await (await fetch("/api/catalogue")).json();
  await refresh();
  setInterval(refresh, 500);
})();
