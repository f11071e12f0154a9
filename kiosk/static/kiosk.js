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
  const key = screen.still_there ? "still_there" : (screen.speak || screen.state);
  if (key === lastSpoken) return;
  lastSpoken = key;
  const voice = $("voice");
  voice.src = `/api/speech/${key}.wav`;
  voice.play().catch(() => {
    if ("speechSynthesis" in window) { const u = new SpeechSynthesisUtterance(screen.prompt); u.lang = "zh-CN"; speechSynthesis.speak(u); }
  });
}

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
    case "verify_face": // the outcome only (pass, fail, to the clerk): never a score
      detail.textContent = screen.face === "fail" ? "没有核验通过" : "请按屏幕提示转头";
      if (screen.face === "fail" && screen.face_attempts_left > 0) actions.appendChild(button("再试一次", () => post("retake"), "secondary"));
      break;
    case "capture":
      detail.textContent = `${screen.material}${screen.key ? "" : "（可以稍后补交）"}${screen.card ? "：正面拍完请翻到背面" : ""}`;
      actions.appendChild(button("这份拍好了", () => post("done")));
      actions.appendChild(button("重拍", () => post("retake"), "secondary"));
      if (!screen.key) actions.appendChild(button("没有这份，跳过", () => post("skip"), "secondary"));
      break;
    case "waiting": detail.innerHTML = ""; {
        const p = document.createElement("div"); p.className = "big"; p.id = "position"; p.textContent = screen.position_words || "正在排队"; detail.appendChild(p);
        const w = document.createElement("div"); w.id = "wait"; w.textContent = screen.wait_words || ""; detail.appendChild(w);
        if (screen.centre_name) { const c = document.createElement("div"); c.textContent = `办理地：${screen.centre_name}`; detail.appendChild(c); }
      } break;
    case "closed": detail.textContent = screen.detail || "现在不能远程办理"; actions.appendChild(button("知道了", () => post("finish"))); break;
    case "result": { const r = screen.receipt || {}; detail.textContent = r.case_number ? `受理编号：${r.case_number}` : (r.text || "本次办理已结束"); actions.appendChild(button("办好了", () => post("finish"))); } break;
    case "device_fault": detail.textContent = "请联系现场工作人员"; break;
    case "hub_unreachable": detail.textContent = "请稍候，不需要重新办理"; break;
  }
  if (screen.hint && !screen.still_there) { const h = document.createElement("div"); h.className = "hint"; h.id = "hint"; h.textContent = screen.hint; detail.prepend(h); }
  if (screen.gate && screen.state === "capture") { const g = document.createElement("div"); g.className = "hint"; g.textContent = screen.gate; detail.appendChild(g); }
  if (screen.note && ["waiting", "in_call", "request"].includes(screen.state)) { const n = document.createElement("div"); n.className = "hint"; n.id = "note"; n.textContent = screen.note; detail.prepend(n); }
  if (screen.call_note && screen.state === "in_call") { const n = document.createElement("div"); n.className = "hint"; n.textContent = screen.call_note; detail.appendChild(n); }
  if (screen.state === "capture" && screen.captured) { const c = document.createElement("div"); c.textContent = `已拍 ${screen.captured} 页`; detail.appendChild(c); }
  if (screen.simulated) { const b = document.createElement("div"); b.className = "simulated"; b.textContent = "演示：设备均为模拟"; detail.appendChild(b); }
  if (screen.state === "read_card" && screen.simulated) actions.appendChild(button("演示：放入示例身份证", () => fetch("/api/sim/card", { method: "POST" }), "secondary"));
  showVideos(screen);
  if (screen.state === "result" && (screen.receipt || {}).case_number) {
    const img = document.createElement("img"); img.id = "qr"; img.alt = "受理编号二维码"; img.src = `/api/receipt.svg?n=${encodeURIComponent(screen.receipt.case_number)}`; detail.appendChild(img);
    if (screen.receipt.text) { const t = document.createElement("pre"); t.className = "receipt"; t.textContent = screen.receipt.text; detail.appendChild(t); }
  }
  $("back").hidden = ["idle", "waiting", "in_call", "result", "request"].includes(screen.state);
  $("cancel").hidden = screen.state === "idle";
  speak(screen);
}

// live pictures: the face camera while verifying, the document camera while capturing, and in
// the call the clerk large with the document camera small
const WANTED = { verify_face: ["face"], capture: ["document", "page"], in_call: ["clerk", "document"] };
function showVideos(screen) {
  const box = $("videos");
  const names = (WANTED[screen.state] || []).filter((n) => (screen.videos || []).includes(n));
  if (box.dataset.names === names.join(",")) return;
  box.dataset.names = names.join(","); box.innerHTML = "";
  for (const n of names) { const img = document.createElement("img"); img.id = `video-${n}`; img.className = n === "clerk" ? "large" : "small"; img.alt = { clerk: "工作人员", face: "您的画面", document: "高拍仪画面", page: "刚拍好的材料" }[n]; img.src = `/api/video/${n}.mjpg`; box.appendChild(img); }
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
