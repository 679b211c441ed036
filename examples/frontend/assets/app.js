// Lists and adds notes through the python-web API (its address comes from config.js,
// written at build time from the API_HOST env var: a fromService reference in render.yaml).
const api = `http://${window.API_HOST}`;

async function load() {
  const res = await fetch(`${api}/notes`);
  const body = await res.json();
  const list = document.getElementById("notes");
  list.innerHTML = "";
  for (const note of body.notes) {
    const li = document.createElement("li");
    li.textContent = note.text;
    list.appendChild(li);
  }
}

document.getElementById("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = new FormData(event.target).get("text");
  await fetch(`${api}/notes`, { method: "POST", body: JSON.stringify({ text }) });
  event.target.reset();
  load();
});

load();
