// Streams N concurrent completions against a sim for D seconds; counts SSE token events and the
// sim process's CPU time (from /proc) to report streamed tokens per CPU-second.
// usage: node bench/sim_stream_load.mjs SIM_URL [concurrency=256] [seconds=10] SIM_PID [max_tokens=2000]
import http from 'node:http';
import fs from 'node:fs';
const [url, conc = '256', dur = '10', pid, maxTokens = '2000'] = process.argv.slice(2);
const u = new URL(url);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(conc) });
const body = JSON.stringify({ model: 'meta-llama/Llama-3.1-8B-Instruct', prompt: 'x'.repeat(400),
  max_tokens: Number(maxTokens), stream: true });
let tokens = 0, done = 0, errors = 0, stop = false;
const cpu = () => { const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; };
function one() {
  if (stop) return;
  const req = http.request({ host: u.hostname, port: u.port, path: '/v1/completions', method: 'POST',
    agent, headers: { 'content-type': 'application/json' } }, (res) => {
    let tail = '';
    res.setEncoding('utf8');
    res.on('data', (c) => { const s = tail + c; let i = 0;
      while ((i = s.indexOf('"text":', i)) >= 0) { tokens++; i += 7; }
      tail = s.slice(-6); });  // one char shorter than the pattern: a match is never counted twice
    res.on('end', () => { done++; one(); });
  });
  req.on('error', () => { errors++; if (!stop) setTimeout(one, 10); });
  req.end(body);
}
for (let i = 0; i < Number(conc); i++) one();
await new Promise((r) => setTimeout(r, 2000));  // warm up
const t0 = Date.now(), c0 = cpu(), k0 = tokens;
await new Promise((r) => setTimeout(r, Number(dur) * 1000));
const secs = (Date.now() - t0) / 1000, cs = cpu() - c0, k = tokens - k0;
stop = true;
console.log(JSON.stringify({ concurrency: Number(conc), seconds: secs, tokens: k,
  tokens_per_s: Math.round(k / secs), sim_cpu_seconds: cs, sim_cpu_util: +(cs / secs).toFixed(2),
  tokens_per_cpu_second: Math.round(k / cs), completed: done, errors }));
process.exit(0);
