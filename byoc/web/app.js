// The runner's page: publish a camera (or a frame-counter canvas) over WHIP, watch the
// processed output over WHEP, show live figures, stop. Every URL is relative, so the page
// works wherever the runner is mounted (behind a proxy too).

import { CounterSource, blockSize, readCounter } from "./counter.js";

const $ = (id) => document.getElementById(id);
const CANVAS = "canvas";
const FPS = 30;
const MAX_WORKFLOW_QUERY = 6000; // longer workflows go in a JSON body instead of the URL
const WHEP_WAIT_MS = 120000; // how long a viewer retries while the session warms up
const ICE_GATHER_MS = 5000;
const LATENCY_SAMPLES = 300;

const page = {
  state: "idle",
  sessionId: null,
  whipResource: null,
  viewerResource: null,
  publisher: null,
  viewer: null,
  source: null, // the MediaStream sent
  counter: null, // the CounterSource, when that is the source
  latencies: [],
  lastCounter: null, // the last counter read back from the output: {value, inverted}
  timers: [],
  stopping: false,
  workflows: [],
};
window.byocPage = page; // for the curious (and for tests): read, do not write

function setState(state, detail = "") {
  page.state = state;
  const badge = $("state");
  badge.textContent = detail ? `${state}: ${detail}` : state;
  badge.className = `state ${state}`;
  $("start").disabled = !["idle", "stopped", "failed"].includes(state);
  $("stop").disabled = !["starting", "live"].includes(state);
  $("apply").disabled = state !== "live";
}

function showError(message) {
  $("error").textContent = message;
}

function authHeaders(extra = {}) {
  const token = $("token").value.trim();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

async function apiError(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) message = `${response.status}: ${body.error}`;
  } catch {
    // not JSON: keep the status line
  }
  return new Error(message);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The last path segment of a Location header: the ids the page builds its own URLs from. */
function lastSegment(location) {
  return decodeURIComponent(new URL(location, window.location.href).pathname.split("/").pop());
}

// ------------------------------------------------------------------------- choices

async function loadWorkflows() {
  const response = await fetch("workflows");
  if (!response.ok) throw await apiError(response);
  page.workflows = (await response.json()).workflows;
  const choice = $("workflow-choice");
  choice.replaceChildren();
  for (const entry of page.workflows) {
    choice.append(new Option(entry.name, entry.name));
  }
  const preferred = page.workflows.find((w) => w.name === "invert") || page.workflows[0];
  if (preferred) choice.value = preferred.name;
  showWorkflow();
}

function showWorkflow() {
  const entry = page.workflows.find((w) => w.name === $("workflow-choice").value);
  if (!entry) return;
  $("workflow").value = JSON.stringify(entry.workflow, null, 2);
  $("workflow-description").textContent = entry.description;
}

async function listSources() {
  const source = $("source");
  const previous = source.value;
  source.replaceChildren();
  let cameras = [];
  try {
    cameras = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
  } catch {
    // no media devices API (insecure origin): the canvas source still works
  }
  cameras.forEach((camera, index) => {
    source.append(new Option(camera.label || `camera ${index + 1}`, camera.deviceId || `#${index}`));
  });
  source.append(new Option("frame counter (canvas; measures latency)", CANVAS));
  if ([...source.options].some((o) => o.value === previous)) source.value = previous;
}

function parsedWorkflow() {
  try {
    return JSON.parse($("workflow").value);
  } catch (error) {
    throw new Error(`the workflow is not valid JSON: ${error.message}`);
  }
}

// ------------------------------------------------------------------------- media

async function openSource(width, height) {
  const choice = $("source").value;
  if (choice === CANVAS) {
    page.counter = new CounterSource(width, height, FPS);
    return page.counter.stream;
  }
  const video = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: FPS } };
  if (choice && !choice.startsWith("#")) video.deviceId = { exact: choice };
  const stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
  listSources(); // labels are only readable once access was granted
  return stream;
}

function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ICE_GATHER_MS); // send what we have: the server answers with its own
  });
}

async function offerSdp(pc) {
  await pc.setLocalDescription(await pc.createOffer());
  await iceGathered(pc);
  return pc.localDescription.sdp;
}

async function publish(stream, workflow, width, height) {
  const pc = new RTCPeerConnection();
  page.publisher = pc;
  const track = stream.getVideoTracks()[0];
  const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  const parameters = transceiver.sender.getParameters();
  parameters.degradationPreference = "maintain-resolution";
  await transceiver.sender.setParameters(parameters).catch(() => {});
  const sdp = await offerSdp(pc);

  page.sessionId = await sendOffer(sdp, workflow, width, height, (answer) =>
    pc.setRemoteDescription({ type: "answer", sdp: answer }),
  );
}

/** Send the publisher's offer; resolve to the new session's id once `accept` took the answer.
 *  A workflow that fits in a URL goes with a plain WHIP POST; a longer one goes in the JSON body
 *  of the runner's whip-ingest capability, which answers the same way inside JSON. */
async function sendOffer(sdp, workflow, width, height, accept) {
  const text = JSON.stringify(workflow);
  let sessionId;
  let answer;
  if (encodeURIComponent(text).length <= MAX_WORKFLOW_QUERY) {
    const query = new URLSearchParams({ workflow: text, width: String(width), height: String(height) });
    const response = await fetch(`whip?${query}`, {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/sdp" }),
      body: sdp,
    });
    if (response.status !== 201) throw await apiError(response);
    sessionId = lastSegment(response.headers.get("Location"));
    answer = await response.text();
  } else {
    const response = await fetch("process/request/whip-ingest", {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/json" }),
      body: JSON.stringify({ sdp_offer: sdp, workflow, width, height }),
    });
    if (!response.ok) throw await apiError(response);
    const body = await response.json();
    sessionId = body.session_id;
    answer = body.result.sdp_answer;
  }
  // Known before the answer is applied, so that Stop can end the session whatever happens next.
  page.sessionId = sessionId;
  page.whipResource = `byoc/whip/${encodeURIComponent(sessionId)}`;
  $("session-id").textContent = sessionId;
  await accept(answer);
  return sessionId;
}

async function watch() {
  const pc = new RTCPeerConnection();
  page.viewer = pc;
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.addEventListener("track", (event) => {
    const output = $("output");
    output.srcObject = event.streams[0] || new MediaStream([event.track]);
    output.play().catch(() => {});
    if (page.counter) readCountersFrom(output);
  });
  const sdp = await offerSdp(pc);
  const url = `byoc/whep/${encodeURIComponent(page.sessionId)}`;
  const deadline = performance.now() + WHEP_WAIT_MS;
  for (;;) {
    if (page.stopping) return;
    const response = await fetch(url, {
      method: "POST",
      headers: authHeaders({ "Content-Type": "application/sdp" }),
      body: sdp,
    });
    if (response.status === 201) {
      page.viewerResource = `${url}/${encodeURIComponent(lastSegment(response.headers.get("Location")))}`;
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
      return;
    }
    if (response.status !== 409 || performance.now() > deadline) throw await apiError(response);
    // Not live yet (the workflow is warming up): come back when the runner says.
    const after = Number(response.headers.get("Retry-After")) || 1;
    setState("starting", "waiting for the first processed frame");
    await sleep(Math.min(after, 2) * 1000);
  }
}

function readCountersFrom(video) {
  const reader = document.createElement("canvas");
  const context = reader.getContext("2d", { willReadFrequently: true });
  const onFrame = () => {
    if (page.stopping || !page.counter) return;
    const width = video.videoWidth;
    if (width > 0) {
      const block = blockSize(width);
      reader.width = width;
      reader.height = 2 * block;
      context.drawImage(video, 0, 0, width, 2 * block, 0, 0, width, 2 * block);
      const counter = readCounter(context.getImageData(0, 0, width, 2 * block), block);
      const sentAt = counter === null ? undefined : page.counter.sentAt.get(counter.value);
      if (sentAt !== undefined) {
        page.lastCounter = counter;
        page.latencies.push(performance.now() - sentAt);
        if (page.latencies.length > LATENCY_SAMPLES) page.latencies.shift();
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// ------------------------------------------------------------------------- figures

function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const ms = (value) => (value === null || value === undefined ? "–" : `${Math.round(value)} ms`);
const fps = (value) => (value === null || value === undefined ? "–" : Number(value).toFixed(1));

async function rtpStats(pc, type) {
  if (!pc) return null;
  const report = await pc.getStats();
  for (const entry of report.values()) {
    if (entry.type === type && entry.kind === "video") return entry;
  }
  return null;
}

async function updateFigures() {
  const sent = await rtpStats(page.publisher, "outbound-rtp");
  if (sent) {
    $("fps-in").textContent = fps(sent.framesPerSecond);
    $("frames-sent").textContent = String(sent.framesSent ?? 0);
  }
  const received = await rtpStats(page.viewer, "inbound-rtp");
  if (received) {
    $("fps-out").textContent = fps(received.framesPerSecond);
    $("frames-received").textContent = String(received.framesDecoded ?? 0);
    $("dropped").textContent = String(received.framesDropped ?? 0);
  }
  if (page.counter) {
    const p50 = percentile(page.latencies, 50);
    $("latency").textContent =
      p50 === null ? "no counter read yet" : `${ms(p50)} / ${ms(percentile(page.latencies, 95))}`;
  }
}

async function updateStatus() {
  if (!page.sessionId) return;
  const response = await fetch(`byoc/session/${encodeURIComponent(page.sessionId)}/status`, {
    headers: authHeaders(),
  });
  if (!response.ok) return;
  const body = await response.json();
  $("session-status").textContent = body.error ? `${body.status}: ${body.error}` : body.status;
  const stream = body.figures; // present while the stream is live
  if (stream) {
    $("runner-fps").textContent = `${fps(stream.fps_in)} / ${fps(stream.fps_out)}`;
    $("runner-dropped").textContent = String(stream.frames_dropped);
    $("runner-latency").textContent = stream.latency_ms > 0 ? ms(stream.latency_ms) : "–";
    const stages = Object.entries(stream.stages || {}).map(([name, s]) => `${name} ${s.p50.toFixed(1)}`);
    $("stages").textContent = stages.length ? stages.join(", ") : "–";
  }
  if (["completed", "stopped", "failed"].includes(body.status) && !page.stopping) {
    await teardown();
    setState(body.status === "failed" ? "failed" : "stopped", body.error || "ended by the runner");
  }
}

function every(intervalMs, task) {
  const run = () => task().catch(() => {}); // a missed update is not an error: try again
  page.timers.push(setInterval(run, intervalMs));
  run();
}

// ------------------------------------------------------------------------- actions

async function start() {
  showError("");
  page.stopping = false;
  page.latencies = [];
  page.lastCounter = null;
  const width = Number($("width").value);
  const height = Number($("height").value);
  setState("starting");
  try {
    const workflow = parsedWorkflow();
    page.source = await openSource(width, height);
    $("input").srcObject = page.source;
    await publish(page.source, workflow, width, height);
    every(1000, updateStatus);
    every(1000, updateFigures);
    await watch();
    if (!page.stopping) setState("live");
  } catch (error) {
    showError(error.message);
    await stop({ failed: true });
  }
}

async function applyWorkflow(workflow = parsedWorkflow()) {
  const response = await fetch(`byoc/session/${encodeURIComponent(page.sessionId)}/params`, {
    method: "POST",
    headers: authHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify({ workflow }),
  });
  if (!response.ok) throw await apiError(response);
}

function stopTimers() {
  for (const timer of page.timers) clearInterval(timer);
  page.timers = [];
}

async function teardown() {
  page.stopping = true;
  stopTimers();
  for (const pc of [page.viewer, page.publisher]) if (pc) pc.close();
  page.viewer = page.publisher = null;
  if (page.counter) page.counter.stop();
  else if (page.source) for (const track of page.source.getTracks()) track.stop();
  page.counter = page.source = null;
  $("input").srcObject = null;
  $("output").srcObject = null;
}

async function stop({ failed = false } = {}) {
  const { viewerResource, whipResource } = page;
  page.viewerResource = page.whipResource = null;
  page.stopping = true;
  stopTimers();
  // DELETE while the peer connections are still up: closing them first would let the runner
  // end the session on its own, and the DELETE would find nothing to end.
  try {
    if (viewerResource) await fetch(viewerResource, { method: "DELETE", headers: authHeaders() });
    if (whipResource) {
      const response = await fetch(whipResource, { method: "DELETE", headers: authHeaders() });
      if (!response.ok && response.status !== 404) throw await apiError(response);
    }
  } catch (error) {
    showError(error.message);
  }
  await teardown();
  if (page.sessionId) await updateStatus().catch(() => {}); // shows how the session ended
  setState(failed ? "failed" : "stopped");
}

async function main() {
  $("workflow-choice").addEventListener("change", showWorkflow);
  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", () => stop());
  $("apply").addEventListener("click", () => applyWorkflow().catch((e) => showError(e.message)));
  setState("idle");
  await listSources();
  try {
    await loadWorkflows();
  } catch (error) {
    showError(`could not load the example workflows: ${error.message}`);
  }
}

main();
