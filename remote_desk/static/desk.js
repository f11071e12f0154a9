// The clerk's page: login, queue, the call (WebRTC answered in the browser), the case file and
// the decision. All signaling goes over the desk's own WebSocket; the browser never talks to
// the hub. No external scripts.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { csrf: null, me: null, ws: null, pc: null, call: null, offers: {}, zoom: 1, turn: 0 };

async function api(path, options = {}) {
  const headers = Object.assign({ "Content-Type": "application/json" }, options.headers || {});
  if (state.csrf && options.method && options.method !== "GET") headers["X-CSRF-Token"] = state.csrf;
  const r = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  const body = r.headers.get("content-type")?.includes("json") ? await r.json() : null;
  if (!r.ok) throw Object.assign(new Error(body?.message || r.statusText), { status: r.status, body });
  return body;
}

function send(event, data) { state.ws.send(JSON.stringify({ event, data: Object.assign({ v: 1 }, data) })); }

function show(id, visible) { $(id).hidden = !visible; }

async function login(event) {
  event.preventDefault();
  $("login-error").textContent = "";
  try {
    state.me = await api("/api/login", { method: "POST", body: JSON.stringify({ username: $("username").value, password: $("password").value }) });
  } catch (e) {
    const wait = e.body?.retry_after_s;
    $("login-error").textContent = e.status === 429 ? `尝试次数过多，请${wait ? ` ${Math.ceil(wait / 60)} 分钟后` : "稍后"}再试` : e.status === 503 ? "登录人数较多，请稍后再试" : "用户名或密码错误";
    return;
  }
  state.csrf = state.me.csrf;
  $("who").textContent = `${state.me.username}（${state.me.centres.join("、")}）`;
  show("login-view", false); show("queue-view", true); show("availability", true); show("logout", false === true);
  $("logout").hidden = false;
  connect();
}

function connect() {
  const proto = location.protocol === "https:" ? "wss" : "ws";
  state.ws = new WebSocket(`${proto}://${location.host}/ws?csrf=${encodeURIComponent(state.csrf)}`);
  state.ws.onmessage = (m) => { const { event, data } = JSON.parse(m.data); (handlers[event] || (() => {}))(data); };
  state.ws.onopen = () => { setAvailable($("available").checked = true); openCamera(); };
  state.ws.onclose = (e) => sessionEnded(e.code);
}

// the desk closes the socket when the session ends (codes 4001-4004): the page says why and
// goes back to the login form; nothing of the call or the case stays on screen
const SESSION_END_ZH = { 4001: "您已退出登录", 4002: "长时间未操作，登录已超时，请重新登录", 4003: "账号已被停用，请联系管理员", 4004: "账号权限已变更，请重新登录" };
function sessionEnded(code) {
  const why = SESSION_END_ZH[code];
  if (!why) return;
  if (state.pc) state.pc.close();
  state.pc = null; state.call = null; state.csrf = null; clearInterval(state.stats);
  for (const id of ["queue-view", "call-view", "case-view", "availability", "logout"]) show(id, false);
  $("identity").innerHTML = ""; $("materials").innerHTML = "";
  show("login-view", true);
  $("login-error").textContent = why;
}

function setAvailable(available) {
  for (const centre of state.me.centres) {
    send("clerk.presence", { clerk_id: state.me.username, centre, matters: state.me.matters?.[centre] || [], available });
  }
}

function minutes(s) { return s < 60 ? `${s} 秒` : `${Math.floor(s / 60)} 分钟`; }

const handlers = {
  "queue.snapshot": (q) => {
    const body = $("queue").querySelector("tbody");
    body.innerHTML = "";
    for (const item of q.items) {
      const row = body.insertRow();
      row.dataset.ticket = item.ticket_id;
      row.insertCell().textContent = item.matter;
      row.insertCell().textContent = item.site;
      row.insertCell().textContent = minutes(item.waiting_s);
      row.insertCell().textContent = item.state === "offered" ? (item.offered_to === state.me.username ? "分配给我" : "已分配") : "等待";
      const cell = row.insertCell();
      if (q.routing === "pick" || item.offered_to === state.me.username) {
        const b = document.createElement("button"); b.textContent = "接受"; b.className = "accept";
        b.onclick = () => send("ticket.accept", { ticket_id: item.ticket_id, clerk_id: state.me.username });
        cell.appendChild(b);
      }
    }
    $("queue-empty").hidden = q.items.length > 0;
  },
  "ticket.offered": (o) => { state.offers[o.ticket_id] = o; },
  "call.start": (c) => { state.ready = startCall(c); },
  "call.offer": async (o) => { await state.ready; await answer(o); },
  "call.ice": (c) => { if (state.pc && c.candidate) state.pc.addIceCandidate({ candidate: c.candidate, sdpMid: c.sdp_mid, sdpMLineIndex: c.sdp_mline_index }).catch(() => {}); },
  "call.peer_lost": () => { $("quality").textContent = "对方网络中断，等待重连…"; },
  "call.peer_back": () => { $("quality").textContent = "对方已重新连接"; },
  "call.ended": (e) => endCall(e.reason),
  "desk.error": (e) => console.warn("desk refused", e),
};

// the clerk's camera and microphone open once, when they sign in (the permission question
// comes then, and the first call does not wait for the camera to start)
async function openCamera() {
  if (state.local && state.local.getTracks().some((t) => t.readyState === "live")) return;
  try {
    state.local = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  } catch (e) { console.warn("no camera or microphone", e); }
}

async function startCall(call) {
  state.call = call;
  show("call-view", true); show("case-view", true);
  $("case-id").textContent = call.case_id;
  state.pc = new RTCPeerConnection({ iceServers: call.ice_servers.map((s) => ({ urls: s.urls, username: s.username || undefined, credential: s.credential || undefined })) });
  let videos = 0;
  state.pc.ontrack = (e) => {
    if (e.track.kind === "video") {
      const target = videos++ === 0 ? $("citizen") : $("document");
      target.srcObject = new MediaStream([e.track]);
    } else {
      const audio = document.createElement("audio"); audio.autoplay = true; audio.id = "citizen-audio";
      audio.srcObject = new MediaStream([e.track]); document.body.appendChild(audio);
    }
  };
  await openCamera();
  loadCase(call.case_id);
  state.stats = setInterval(showStats, 1000);
}

async function answer(offer) {
  await state.pc.setRemoteDescription({ type: "offer", sdp: offer.sdp });
  // the kiosk offers its face camera, document camera and microphone; the clerk's camera and
  // microphone go back on the first video and the audio m-line of that offer
  const used = new Set();
  for (const track of state.local?.getTracks() || []) {
    const t = state.pc.getTransceivers().find((x) => !used.has(x) && x.receiver.track.kind === track.kind);
    if (!t) continue;
    used.add(t);
    t.direction = "sendrecv";
    await t.sender.replaceTrack(track);
    t.sender.setStreams?.(state.local);
  }
  const reply = await state.pc.createAnswer();
  await state.pc.setLocalDescription(reply);
  await new Promise((resolve) => {
    if (state.pc.iceGatheringState === "complete") return resolve();
    state.pc.onicegatheringstatechange = () => state.pc.iceGatheringState === "complete" && resolve();
    setTimeout(resolve, 3000);
  });
  send("call.answer", { call_id: state.call.call_id, sdp: state.pc.localDescription.sdp });
}

async function showStats() {
  if (!state.pc) return;
  const report = await state.pc.getStats();
  let fps = 0, lost = 0, received = 0;
  report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") { fps = Math.max(fps, s.framesPerSecond || 0); lost += s.packetsLost || 0; received += s.packetsReceived || 0; } });
  const loss = received ? (100 * lost / (lost + received)).toFixed(1) : "0";
  $("quality").textContent = `画面 ${Math.round(fps)} 帧/秒，丢包 ${loss}%`;
  $("quality").dataset.fps = String(fps);
}

function endCall(reason) {
  if (state.pc) state.pc.close();
  state.pc = null; clearInterval(state.stats);
  $("quality").textContent = `通话已结束（${reason}）`;
}

function row(table, label, value) {
  const tr = table.insertRow(); tr.insertCell().textContent = label; tr.insertCell().textContent = value ?? "—";
}

async function showIdentity(caseId, files, check) {
  const box = $("identity"); box.innerHTML = "";
  const file = files.find((f) => f.name === "identity.json");
  if (!file) { box.textContent = "无身份核验记录"; return; }
  const r = await fetch(`/api/cases/${encodeURIComponent(caseId)}/files/identity.json`, { credentials: "same-origin" });
  const id = await r.json();
  const card = id.card || {}, v = id.verification || {};
  const table = document.createElement("table"); table.id = "identity-table";
  row(table, "证件类型", card.card_type); row(table, "姓名", card.name); row(table, "证件号码", card.id_number);
  row(table, "号码校验", card.id_number_valid === undefined ? undefined : (card.id_number_valid ? "通过" : "未通过"));
  row(table, "有效期", card.valid_from ? `${card.valid_from} 至 ${card.valid_long_term ? "长期" : card.valid_to}` : undefined);
  const DECISION_ZH = { match: "一致", review: "待人工复核", no_match: "不一致", no_face: "未检测到人脸", multiple_faces: "多张人脸", poor_quality: "图像质量不足" };
  const num = (x) => (typeof x === "number" ? x.toFixed(2) : "—");
  row(table, "人证比对", v.decision ? `${DECISION_ZH[v.decision] || v.decision}（距离 ${num(v.distance)}，阈值 ${num(v.threshold)}）` : id.decision);
  row(table, "活体检测", v.liveness ? `${v.liveness.passed ? "通过" : "未通过"}${v.liveness.simulated ? "（模拟）" : ""}` : undefined);
  const sec = (x) => (x === null || x === undefined ? "—" : Number(x).toFixed(1));
  const STEP_ZH = { turn_left: "向左转头", turn_right: "向右转头", blink: "眨眼" };
  for (const step of v.liveness?.steps || []) row(table, `　${STEP_ZH[step.step] || step.step}`, `${step.passed ? "完成" : "未完成"}（${sec(step.started_at)}–${sec(step.ended_at)} 秒）`);
  if (v.to_clerk) row(table, "终端核验", `${v.flag || "多次核验未通过"}：请在视频中人工核对身份`);
  if ((v.replay_signs || []).length) row(table, "翻拍迹象（终端）", v.replay_signs.join("、"));
  // the desk's own re-check of the same photos and liveness frames (GB/T 38671-2020)
  row(table, "服务端复核", !check ? "复核中…" : `${DECISION_ZH[check.desk_decision] || check.desk_decision}（距离 ${num(check.desk_distance)}）${check.agrees ? "，与终端一致" : "，与终端结果不一致，请人工核对"}`);
  for (const problem of check?.problems || []) row(table, "　复核发现", problem);
  if (id.agent) row(table, "代办", (id.represented || []).join("、"));
  box.appendChild(table);
  const evidence = (v.evidence || []).map((e) => e.file).filter((n) => n !== "live_still.jpg");
  for (const name of ["card_photo.jpg", "live_still.jpg", ...evidence]) {
    if (!files.some((f) => f.name === name)) continue;
    const img = document.createElement("img"); img.alt = name === "card_photo.jpg" ? "证件照" : `现场照 ${name}`;
    const blob = await (await fetch(`/api/cases/${encodeURIComponent(caseId)}/files/${name}`, { credentials: "same-origin" })).blob();
    img.src = URL.createObjectURL(blob); box.appendChild(img);
  }
}

async function loadCase(caseId) {
  let c;
  try { c = await api(`/api/cases/${encodeURIComponent(caseId)}`); } catch (e) { $("materials").textContent = "材料尚未上传"; setTimeout(() => loadCase(caseId), 2000); return; }
  showIdentity(caseId, c.files, c.face_check);
  state.faceRetries = c.face_check ? 0 : (state.faceRetries || 0) + 1;
  if (!c.face_check && state.faceRetries <= 10) setTimeout(() => loadCase(caseId), 3000);  // the desk's re-check is still running
  $("signature").textContent = c.signature?.verified ? `材料包签名已验证（终端 ${c.signature.kiosk_id}，清单 SHA-256 ${c.signature.manifest_sha256.slice(0, 16)}…）` : "材料包签名未验证";
  const list = $("materials"); list.innerHTML = "";
  $("rescan-material").innerHTML = "";
  for (const f of c.files) {
    const li = document.createElement("li");
    const b = document.createElement("button"); b.textContent = `${f.material || f.name}（${f.name}）`; b.className = "open-file";
    b.onclick = () => openFile(caseId, f);
    li.appendChild(b); list.appendChild(li);
    if (f.material) $("rescan-material").add(new Option(f.material, f.material));
  }
}

async function openFile(caseId, f) {
  const r = await fetch(`/api/cases/${encodeURIComponent(caseId)}/files/${encodeURIComponent(f.name)}`, { credentials: "same-origin" });
  const blob = await r.blob();
  $("page").src = URL.createObjectURL(blob);
  state.zoom = 1; state.turn = 0; applyView();
  show("viewer", true);
}

function applyView() { $("page").style.transform = `scale(${state.zoom}) rotate(${state.turn}deg)`; }

async function decide(event) {
  event.preventDefault();
  const kind = new FormData($("decision-form")).get("kind");
  const body = { kind, reason: $("reason").value };
  if (kind === "accept_pending") Object.assign(body, { missing: $("missing").value.split(/[,，]/).map((s) => s.trim()).filter(Boolean), commitment: $("commitment").value, working_days: Number($("working-days").value) });
  try {
    const c = await api(`/api/cases/${encodeURIComponent(state.call.case_id)}/decision`, { method: "POST", body: JSON.stringify(body) });
    const d = c.decision;
    $("decision-result").textContent = `${d.kind_zh}：受理编号 ${c.case_number || "—"}${d.deadline ? `，补交期限 ${d.deadline}` : ""}`;
    $("decision-result").dataset.caseNumber = c.case_number || "";
    // the receipt goes back to the kiosk, which prints it and shows it as a QR code
    if (state.call) send("call.command", { call_id: state.call.call_id, name: "receipt", args: { case_number: c.case_number || "", kind: d.kind, text: d.receipt } });
  } catch (e) { $("decision-result").textContent = `未能提交：${e.message}`; }
}

$("login-form").addEventListener("submit", login);
$("decision-form").addEventListener("submit", decide);
$("available").addEventListener("change", (e) => setAvailable(e.target.checked));
$("logout").addEventListener("click", async () => { await api("/api/logout", { method: "POST" }); location.reload(); });
$("mute").addEventListener("click", () => { for (const t of state.local?.getAudioTracks() || []) t.enabled = !t.enabled; $("mute").textContent = $("mute").textContent === "静音" ? "取消静音" : "静音"; });
// the kiosk captures and uploads the new page as a supplement: the list refreshes until it is in
function watchForNewPages() {
  const before = $("materials").children.length;
  let tries = 0;
  const tick = async () => { await loadCase(state.call.case_id); if ($("materials").children.length === before && ++tries < 20) setTimeout(tick, 1500); };
  setTimeout(tick, 1500);
}
$("capture").addEventListener("click", () => { send("call.command", { call_id: state.call.call_id, name: "capture_full", args: {} }); watchForNewPages(); });
$("rescan").addEventListener("click", () => { send("call.command", { call_id: state.call.call_id, name: "rescan", args: { material: $("rescan-material").value } }); watchForNewPages(); });
$("hangup").addEventListener("click", () => { send("call.end", { call_id: state.call.call_id, reason: "hangup" }); endCall("hangup"); });
$("zoom-in").addEventListener("click", () => { state.zoom *= 1.25; applyView(); });
$("zoom-out").addEventListener("click", () => { state.zoom /= 1.25; applyView(); });
$("rotate").addEventListener("click", () => { state.turn = (state.turn + 90) % 360; applyView(); });
$("close-viewer").addEventListener("click", () => show("viewer", false));
