// The slipstream example Node app: no dependencies, its version in every response.
const http = require("http");
const fs = require("fs");
const path = require("path");

const version = fs.readFileSync(path.join(__dirname, "VERSION"), "utf8").trim();
const started = Date.now();

const server = http.createServer((req, res) => {
  const body = req.url === "/health"
    ? { status: "ok", version, uptime: (Date.now() - started) / 1000 }
    : { service: process.env.RENDER_SERVICE_NAME || "node-web", version, path: req.url };
  const data = JSON.stringify(body);
  res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(data), "X-App-Version": version });
  res.end(data);
});

const port = Number(process.env.PORT || 10000);
server.listen(port, "127.0.0.1", () => console.log(JSON.stringify({ level: "info", msg: `listening on ${port}`, version })));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
