// The guest's console in the browser: xterm.js over the WebSocket
// /v1/guests/NAME/console (the session cookie authenticates it; kvzd
// checks Origin). Recent output is replayed by the console on connect.
import { Terminal } from "@xterm/xterm";

export function openConsole(el, name, onStatus) {
  const term = new Terminal({ convertEol: false, cursorBlink: true, fontSize: 14, scrollback: 5000 });
  term.open(el);
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/v1/guests/" + encodeURIComponent(name) + "/console");
  ws.binaryType = "arraybuffer";
  const enc = new TextEncoder();
  ws.addEventListener("open", () => {
    onStatus("connected");
    term.focus();
  });
  ws.addEventListener("message", (m) => term.write(new Uint8Array(m.data)));
  ws.addEventListener("close", (e) => {
    onStatus("closed" + (e.reason ? ": " + e.reason : ""));
    term.write("\r\n\x1b[2m[console closed" + (e.reason ? ": " + e.reason : "") + "]\x1b[0m\r\n");
  });
  const input = term.onData((d) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });
  return () => {
    input.dispose();
    ws.close();
    term.dispose();
  };
}
