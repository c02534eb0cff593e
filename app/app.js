// A read-only view of the merged records, from the coordinators' API.
// Plain modules, nothing loaded from outside the server.
const LABELS = {
  ar: { club: "نادي السمارة الدولي للمدن المتوأمة", readonly: "عرض للقراءة فقط من الخادم. تطبيق المندوبين دون اتصال قيد الإنجاز.",
        kinds: { club: "النادي", city: "المدن", agreement: "الاتفاقيات", project: "المشاريع", meeting: "الاجتماعات", person: "الأشخاص", report: "التقارير" } },
  fr: { club: "Club international de Smara des villes jumelées", readonly: "Vue en lecture seule du serveur. L'application hors ligne des délégués est en cours.",
        kinds: { club: "Club", city: "Villes", agreement: "Accords", project: "Projets", meeting: "Réunions", person: "Personnes", report: "Rapports" } },
  en: { club: "Smara International Club of Twinned Cities", readonly: "Read-only view from the server. The delegates' offline app is in progress.",
        kinds: { club: "Club", city: "Cities", agreement: "Agreements", project: "Projects", meeting: "Meetings", person: "People", report: "Reports" } },
};
const SIGN_IN = {
  ar: { signin: "افتح رابط الدعوة الذي أرسله إليك منسق لتسجيل الدخول على هذا الجهاز.", failed: "تعذر تسجيل الدخول: " },
  fr: { signin: "Ouvrez le lien d'invitation envoyé par un coordinateur pour connecter cet appareil.", failed: "Connexion impossible : " },
  en: { signin: "Open the invite link a coordinator sent you to sign this device in.", failed: "Could not sign in: " },
};
const ORDER = ["club", "city", "agreement", "project", "meeting", "person", "report"];
let lang = localStorage.getItem("lang") || "ar";
let records = [];

function title(t) {
  return (t && (t[lang] || t.ar || t.fr || t.en)) || "—";
}

function render() {
  document.documentElement.lang = lang;
  document.documentElement.dir = lang === "ar" ? "rtl" : "ltr";
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = LABELS[lang][el.dataset.t];
  for (const b of document.querySelectorAll("[data-lang]")) b.setAttribute("aria-pressed", String(b.dataset.lang === lang));
  const root = document.getElementById("records");
  root.replaceChildren();
  for (const kind of ORDER) {
    const items = records.filter((r) => r.kind === kind);
    if (!items.length) continue;
    const section = document.createElement("section");
    const h = document.createElement("h2");
    h.textContent = `${LABELS[lang].kinds[kind]} (${new Intl.NumberFormat(lang).format(items.length)})`;
    const ul = document.createElement("ul");
    for (const r of items) {
      const li = document.createElement("li");
      const name = document.createElement("bdi");
      name.textContent = title(r.title);
      const status = document.createElement("span");
      status.className = "status";
      status.textContent = r.status || "";
      li.append(name, status);
      ul.append(li);
    }
    section.append(h, ul);
    root.append(section);
  }
}

for (const b of document.querySelectorAll("[data-lang]")) {
  b.addEventListener("click", () => { lang = b.dataset.lang; localStorage.setItem("lang", lang); render(); });
}
// An invite link (`/#invite=CODE`) is redeemed once for a device token,
// kept in this browser so the device stays signed in offline.
async function signIn() {
  const code = new URLSearchParams(location.hash.slice(1)).get("invite");
  if (code) {
    history.replaceState(null, "", location.pathname);
    const res = await fetch("/api/invites/redeem", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ code }),
    });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ?? res.statusText);
    localStorage.setItem("token", body.token);
  }
  return localStorage.getItem("token");
}

function say(text) {
  const p = document.createElement("p");
  p.className = "note";
  p.textContent = text;
  document.getElementById("records").replaceChildren(p);
}

try {
  const token = await signIn();
  if (!token) {
    render();
    say(SIGN_IN[lang].signin);
  } else {
    const res = await fetch("/api/records", { headers: { authorization: `Bearer ${token}` } });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error ?? res.statusText);
    records = body;
    render();
  }
} catch (e) {
  render();
  say(SIGN_IN[lang].failed + e.message);
}
