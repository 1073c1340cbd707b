// Shows the node's status from /api/v1/status; the canvas editor grows around it.
const byId = (id) => document.getElementById(id);

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

async function refresh() {
  try {
    const response = await fetch("/api/v1/status");
    if (!response.ok) throw new Error(`status ${response.status}`);
    const status = await response.json();
    byId("peer-id").textContent = status.peer_id;
    byId("roles").textContent = status.roles.join(", ");
    byId("version").textContent = status.version;
    byId("uptime").textContent = formatDuration(status.uptime_s);
    byId("network").textContent = `network: ${status.network}`;
    byId("error").hidden = true;
  } catch (err) {
    byId("error").textContent = `Cannot reach the node (${err.message}); retrying…`;
    byId("error").hidden = false;
  }
}

refresh();
setInterval(refresh, 5000);
