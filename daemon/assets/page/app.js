// The reception page's script: reads the daemon's state, starts checks, shows the answer,
// and follows the daemon's event stream (no polling, no reload). Everything shown comes from
// the page's own endpoints under /page/api/; text from the daemon is put in with textContent,
// never as markup.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);

  // How each result state is told: colour (CSS, by data-state), an icon and words.
  const STATES = {
    confirmed: { icon: "✓", label: "有効" },
    invalid: { icon: "✕", label: "資格（無効）" },
    not_found: { icon: "?", label: "資格情報なし" },
    multiple: { icon: "≡", label: "複数該当" },
    captured: { icon: "!", label: "オフライン受付（事後確認待ち）" },
    refused: { icon: "✕", label: "確認できませんでした" },
    error: { icon: "!", label: "エラー" },
    document: { icon: "▤", label: "書類で受付" },
    resolved: { icon: "✓", label: "請求根拠決定" },
  };

  let line = "unknown";
  // A captured check's co-payment stays on the banner until the line is back.
  let capturedCopay = undefined;
  let pin = "";
  let busy = false;
  // Read-aloud (R21): whether the daemon can speak, and the id of the result shown.
  let readAloud = { available: false, auto: false, problem_ja: null };
  let speechId = null;
  // PIN tries the card said are left after the last wrong PIN (null: not known).
  let triesLeft = null;
  // The last check's report on screen.
  let lastReport = null;

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  function make(tag, cls, text) {
    const el = document.createElement(tag);
    if (cls) el.className = cls;
    if (text !== undefined && text !== null) el.textContent = text;
    return el;
  }

  function dateJa(iso) {
    if (!iso) return "—";
    const [y, m, d] = iso.split("-").map((s) => parseInt(s, 10));
    return y + "年" + m + "月" + d + "日";
  }

  // A date typed at the counter: 2026-03-31, 2026/3/31 or 20260331 (full-width digits too);
  // the ISO form, or null when it is not a date.
  function parseDate(text) {
    const t = (text || "")
      .trim()
      .replace(/[０-９]/g, (c) => String.fromCharCode(c.charCodeAt(0) - 0xfee0))
      .replace(/[／－]/g, "-");
    let m = /^(\d{4})[-/](\d{1,2})[-/](\d{1,2})$/.exec(t) || /^(\d{4})(\d{2})(\d{2})$/.exec(t);
    if (!m) return null;
    const [y, mo, d] = [m[1], m[2], m[3]].map((x) => parseInt(x, 10));
    const date = new Date(Date.UTC(y, mo - 1, d));
    if (date.getUTCFullYear() !== y || date.getUTCMonth() !== mo - 1 || date.getUTCDate() !== d) return null;
    return y + "-" + String(mo).padStart(2, "0") + "-" + String(d).padStart(2, "0");
  }

  function signedOut() {
    $("stream").textContent =
      "サインインが切れました。この端末で「tsunagi open」を実行して開き直してください。";
  }

  async function getJson(path) {
    const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
    if (r.status === 401) {
      signedOut();
      throw new Error("signed out");
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    return r.json();
  }
  const UNREACHABLE = "tsunagid に接続できませんでした。tsunagid が動いているか確認してください。";

  // Posts JSON to one of the page's own routes; the response and its JSON (null if none).
  async function postJson(path, body) {
    const r = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    return [r, await r.json().catch(() => null)];
  }

  // Copies the filled text fields `names` of `form` into `body`, and its birth date as ISO.
  // False when the birth date does not read: `error` says so and the field has the focus.
  function fieldsInto(form, names, body, error) {
    for (const name of names) {
      const v = form.elements[name].value.trim();
      if (v) body[name] = v;
    }
    const birth = form.elements.birth_date.value.trim();
    if (!birth) return true;
    const iso = parseDate(birth);
    if (!iso) {
      error("生年月日は 1980-04-01 の形で入力してください。");
      form.elements.birth_date.focus();
      return false;
    }
    body.birth_date = iso;
    return true;
  }


  // ----- line, readers, banner -----

  function renderLine(state, label) {
    // The line coming back (not merely being read as online) ends a capture's banner.
    if (state === "online" && line !== "online" && line !== "unknown") capturedCopay = undefined;
    line = state;
    const el = $("line");
    el.dataset.state = state;
    const icon = { online: "✓", degraded: "!", offline: "✕" }[state] || "…";
    el.querySelector(".icon").textContent = icon;
    $("line-text").textContent = "回線: " + (label || state);
    renderBanner();
  }

  function copayText(tenths) {
    return tenths
      ? "窓口負担は " + tenths + "割 を受け取ってください"
      : "通常の負担割合（前回の情報がないため患者さんに確認）を受け取ってください";
  }

  function renderBanner() {
    const show = line === "offline" || capturedCopay !== undefined;
    $("offline").hidden = !show;
    const copay = $("offline-copay");
    if (capturedCopay !== undefined) {
      copay.textContent = copayText(capturedCopay);
      copay.hidden = false;
    } else {
      copay.textContent = "";
      copay.hidden = true;
    }
  }

  function renderReaders(readers, problem) {
    const list = $("readers");
    clear(list);
    for (const r of readers || []) {
      const li = make("li");
      li.appendChild(make("span", "reader-name", r.name));
      li.appendChild(
        r.card_present
          ? make("span", "card-on", "✓ カードあり")
          : make("span", "card-off", "－ カードなし"),
      );
      list.appendChild(li);
    }
    if (!readers || readers.length === 0) {
      list.appendChild(make("li", "card-off", "カードリーダーが見つかりません"));
    }
    const p = $("readers-problem");
    if (problem !== undefined) {
      p.textContent = problem || "";
      p.hidden = !problem;
    }
  }

  async function loadStatus() {
    const s = await getJson("/page/api/status");
    renderLine(s.line, s.line_label_ja);
    renderReaders(s.readers, s.readers_problem);
    if (s.read_aloud) readAloud = s.read_aloud;
    renderSpeech();
  }

  // ----- read-aloud -----

  function renderSpeech(problem) {
    const button = $("speak-button");
    button.hidden = !speechId;
    button.disabled = !readAloud.available;
    const p = $("speech-problem");
    const text = problem || (speechId && !readAloud.available ? readAloud.problem_ja : "");
    p.textContent = text || "";
    p.hidden = !text;
  }

  // The daemon synthesises the sentences of the result shown (the page never sends words).
  function speak() {
    if (!speechId || !readAloud.available) return;
    const audio = $("speech-audio");
    audio.src = "/page/api/speech/" + encodeURIComponent(speechId);
    audio.dataset.state = "loading";
    audio.play().catch(() => {});
  }

  // The sound did not come. Why is asked of the status (asking for the sound again would
  // run the synthesis again): read-aloud became unavailable, or the engine failed.
  async function speechFailed() {
    $("speech-audio").dataset.state = "failed";
    await loadStatus().catch(() => {});
    renderSpeech(
      readAloud.available
        ? "読み上げの音声を作れませんでした。結果は画面で確認してください。"
        : readAloud.problem_ja,
    );
  }

  // ----- the pending list -----

  async function loadPending() {
    const list = await getJson("/page/api/pending");
    const rows = $("pending-rows");
    clear(rows);
    for (const c of list.checks) {
      const tr = make("tr");
      tr.dataset.checkId = c.id;
      tr.appendChild(make("td", "id", c.id.slice(-8)));
      tr.lastChild.title = c.id;
      tr.appendChild(make("td", "date", dateJa(c.visit_date)));
      const due = make("td", c.overdue ? "overdue date" : "date");
      due.textContent = dateJa(c.due) + (c.overdue ? "（⚠ 期限切れ）" : "");
      tr.appendChild(due);
      tr.appendChild(make("td", null, c.phase_label_ja));
      const next = make("td", null, c.next_step_ja || (c.captured_offline ? "自動で再確認します" : ""));
      if (asksForDeclaration(c)) {
        const open = make("button", "small", "申立書を記入");
        open.type = "button";
        open.setAttribute("aria-label", "確認ID " + c.id.slice(-8) + " の申立書を記入");
        open.addEventListener("click", () => openDeclaration(c.id, c.next_step_ja || ""));
        next.appendChild(document.createTextNode(" "));
        next.appendChild(open);
      }
      tr.appendChild(next);
      rows.appendChild(tr);
    }
    // The answer on screen may need a 申立書 only the check's next step tells (資格情報なし).
    const shown = lastReport && list.checks.find((c) => c.id === lastReport.check_id);
    if (shown && asksForDeclaration(shown) && $("declaration-panel").hidden) {
      openDeclaration(shown.id, shown.next_step_ja || "", false);
    }
    const n = list.checks.length;
    const overdue = list.checks.filter((c) => c.overdue).length;
    $("pending").hidden = n === 0;
    $("pending-empty").hidden = n !== 0;
    $("pending-count").textContent =
      n === 0 ? "" : "（" + n + "件" + (overdue ? "、うち期限切れ " + overdue + "件" : "") + "）";
  }

  // ----- the check form -----

  function method() {
    const checked = document.querySelector('input[name="method"]:checked');
    return checked ? checked.value : "visual";
  }

  function renderPin() {
    $("pin-dots").textContent = pin.length ? "●".repeat(pin.length) + "（" + pin.length + "桁）" : "入力なし";
  }

  function renderForm() {
    const photoLess = $("photo-less").checked;
    const visual = document.querySelector('input[name="method"][value="visual"]');
    if (photoLess) {
      // R2: a card without a photo is checked by PIN only.
      document.querySelector('input[name="method"][value="pin"]').checked = true;
    }
    visual.disabled = photoLess;
    $("pin-area").hidden = method() !== "pin";
  }

  function addDigit(d) {
    if (pin.length < 4) pin += d;
    renderPin();
  }

  function showError(text) {
    const e = $("form-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  function renderResult(report) {
    const box = $("result");
    clear(box);
    const state = STATES[report.status] ? report.status : "error";
    box.dataset.state = state;
    const head = make("p", "result-head");
    const icon = make("span", "icon", STATES[state].icon);
    icon.setAttribute("aria-hidden", "true");
    head.appendChild(icon);
    head.appendChild(make("span", "result-label", STATES[state].label));
    box.appendChild(head);
    if (report.copay_tenths) {
      box.appendChild(make("p", "result-copay", "負担割合 " + report.copay_tenths + "割"));
    }
    box.appendChild(make("p", "result-message", report.message_ja));
    const steps = (report.instructions_ja || []).concat(
      (report.notices || []).map((n) => n.message_ja),
    );
    if (steps.length) {
      box.appendChild(make("p", "result-next", "いますること:"));
      const ol = make("ol");
      for (const s of steps) ol.appendChild(make("li", null, s));
      box.appendChild(ol);
    }
    if (report.check_id) {
      box.appendChild(make("p", "result-id", "確認ID: " + report.check_id));
    }
  }

  function renderTries(report) {
    const tries = $("pin-tries");
    const last = $("last-try");
    let left = report && report.status === "refused" ? report.pin_tries_left : null;
    if (report && report.error === "last-try-not-confirmed") left = 1;
    triesLeft = left === undefined ? null : left;
    if (left === null || left === undefined) {
      tries.hidden = true;
      last.hidden = true;
      $("confirm-last-try").checked = false;
      return;
    }
    tries.textContent =
      report.error === "last-try-not-confirmed"
        ? "暗証番号の残りは 1 回です。"
        : "暗証番号が違います。残り " + left + " 回です。";
    tries.hidden = false;
    last.hidden = left !== 1;
  }

  async function startCheck(ev) {
    ev.preventDefault();
    if (busy) return;
    showError("");
    const m = method();
    const body = {
      method: m,
      first_visit: $("first-visit").checked,
      photo_less: $("photo-less").checked,
    };
    if (m === "pin") {
      if (!/^[0-9]{4}$/.test(pin)) {
        showError("暗証番号は数字4桁です。入力パッドで4桁入力してください。");
        return;
      }
      // The last try locks the card when wrong: never sent without the patient's consent.
      if (triesLeft === 1 && !$("confirm-last-try").checked) {
        showError(
          "暗証番号の残りは1回です。間違えるとカードがロックされることを患者さんに伝え、同意を得たらチェックを入れてください。",
        );
        $("confirm-last-try").focus();
        return;
      }
      body.pin = pin;
      body.confirm_last_try = $("confirm-last-try").checked;
    }
    busy = true;
    $("start-button").disabled = true;
    $("busy").hidden = false;
    // The browser's own timing of a check, for the page's benchmark (benches/page.rs).
    performance.mark("tsunagi:check-sent");
    try {
      const [r, answer] = await postJson("/page/api/checks", body);
      performance.mark("tsunagi:answer-arrived");
      if (r.status === 401) {
        signedOut();
      } else if (!r.ok) {
        showError((answer && answer.detail) || "確認を始められませんでした（HTTP " + r.status + "）。");
      } else {
        lastReport = answer;
        renderResult(answer);
        renderTries(answer);
        renderDeclaration(answer);
        speechId = answer.speech_id || null;
        renderSpeech();
        if (readAloud.auto) speak();
        // Marked once the frame holding the answer has been drawn.
        requestAnimationFrame(() => setTimeout(() => performance.mark("tsunagi:answer-drawn"), 0));
        // The check's own next step (it may ask for a 申立書) comes with the pending list.
        if (answer.check_id) loadPending().catch(() => {});
        if (answer.status === "captured") {
          capturedCopay = answer.copay_tenths || null;
          renderBanner();
        }
        $("result").focus();
      }
    } catch (e) {
      showError(UNREACHABLE);
    } finally {
      // The PIN is not kept after it was sent, whatever happened.
      pin = "";
      renderPin();
      busy = false;
      $("start-button").disabled = false;
      $("busy").hidden = true;
    }
  }

  // ----- the 申立書 (R14) -----

  // Whether a report asks for the 申立書: a capture always may need it; an answer says so.
  function needsDeclaration(report) {
    if (!report.check_id) return false;
    if (report.status === "captured") return true;
    const texts = [report.message_ja || ""].concat(report.instructions_ja || []);
    return texts.some((t) => t.includes("申立書"));
  }

  // Whether a listed check asks for the 申立書 (open, and captured or told so).
  function asksForDeclaration(c) {
    return c.captured_offline || (c.next_step_ja || "").includes("申立書");
  }

  function renderDeclaration(report) {
    if (!needsDeclaration(report)) {
      $("declaration-panel").hidden = true;
      return;
    }
    const texts = [report.message_ja || ""].concat(report.instructions_ja || []);
    openDeclaration(report.check_id, texts.join("\n"), false);
  }

  // Shows the form for check `id`; `said` is what the daemon told about it; `focus` moves
  // the keyboard there (a staff member asked for it from the list).
  function openDeclaration(id, said, focus) {
    const panel = $("declaration-panel");
    const form = $("declaration-form");
    if (form.dataset.checkId !== id) {
      form.reset();
      $("declaration-done").hidden = true;
      declarationError("");
    }
    form.dataset.checkId = id;
    $("declaration-for").textContent = "確認ID: " + id;
    // R14: when the clinic already holds the patient's qualification from earlier visits,
    // an oral confirmation is enough; the form stays offered for a change the patient reports.
    $("declaration-intro").textContent = said.includes("申立書は不要")
      ? "前回確認した保険があるため、変わっていないことを口頭で確認できれば申立書は不要です。保険が変わった、または分からない場合は、患者さんに分かる範囲で記入してもらってください。"
      : "資格を確認できなかったため、患者さんに分かる範囲で記入してもらってください。空欄のままでも保存できます。";
    panel.hidden = false;
    if (focus !== false) {
      panel.scrollIntoView();
      $("decl-name").focus();
    }
  }

  function declarationError(text) {
    const e = $("declaration-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function saveDeclaration(ev) {
    ev.preventDefault();
    const form = $("declaration-form");
    const id = form.dataset.checkId;
    if (!id) return;
    declarationError("");
    $("declaration-done").hidden = true;
    const body = {};
    const names = ["name", "address", "phone", "insurer_name", "employer", "sex", "insurance_type"];
    if (!fieldsInto(form, names, body, declarationError)) return;
    if (form.elements.copay.value) body.copay = parseInt(form.elements.copay.value, 10);
    $("declaration-save").disabled = true;
    try {
      const [r, answer] = await postJson("/page/api/checks/" + encodeURIComponent(id) + "/declaration", body);
      if (r.status === 401) {
        signedOut();
      } else if (!r.ok) {
        declarationError((answer && answer.detail) || "申立書を保存できませんでした（HTTP " + r.status + "）。");
      } else {
        const done = $("declaration-done");
        done.textContent =
          answer.message_ja +
          (answer.missing_ja && answer.missing_ja.length ? "（未記入: " + answer.missing_ja.join("・") + "）" : "");
        done.hidden = false;
        done.focus();
      }
    } catch (e) {
      declarationError(UNREACHABLE);
    } finally {
      $("declaration-save").disabled = false;
    }
  }

  // ----- the month's history (R20) -----

  async function loadHistory() {
    const list = await getJson("/page/api/history");
    const rows = $("history-rows");
    clear(rows);
    for (const c of list.checks) {
      const tr = make("tr");
      tr.dataset.checkId = c.id;
      tr.dataset.state = c.state;
      tr.appendChild(make("td", "date", dateJa(c.visit_date)));
      const result = make("td", "history-state");
      const icon = make("span", "icon", (STATES[c.state] || STATES.error).icon);
      icon.setAttribute("aria-hidden", "true");
      result.appendChild(icon);
      result.appendChild(make("span", null, " " + c.state_label_ja));
      tr.appendChild(result);
      tr.appendChild(make("td", null, c.copay_tenths ? c.copay_tenths + "割" : "—"));
      tr.appendChild(make("td", null, c.phase_label_ja));
      tr.appendChild(make("td", "date", dateJa(c.viewable_until)));
      const id = make("td", "id", c.id.slice(-8));
      id.title = c.id;
      tr.appendChild(id);
      rows.appendChild(tr);
    }
    const n = list.checks.length;
    $("history").hidden = n === 0;
    $("history-empty").hidden = n !== 0;
    $("history-count").textContent =
      n === 0 ? "" : list.total > n ? "（全" + list.total + "件のうち新しい" + n + "件）" : "（" + n + "件）";
  }

  // ----- the document helper (R7–R11) -----

  function documentKind() {
    const v = $("doc-kind").value;
    return v === "oshirase-card" ? { kind: "oshirase", with_card: true } : { kind: v, with_card: false };
  }

  function renderDocumentForm() {
    const k = documentKind().kind;
    const dated = k === "kakuninsho" || k === "hokensho";
    $("doc-expires").disabled = !dated;
    $("doc-expires-label").classList.toggle("off", !dated);
  }

  // What the last acceptable verdict was asked with: what "record" records.
  let judgedDocument = null;

  function documentError(text) {
    const e = $("document-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function checkDocument(ev) {
    ev.preventDefault();
    documentError("");
    const { kind, with_card } = documentKind();
    const q = new URLSearchParams({ kind: kind });
    if (with_card) q.set("with_card", "true");
    if (!$("doc-expires").disabled) {
      const expires = parseDate($("doc-expires").value);
      if (!expires) {
        documentError("書類に書かれた有効期限を 2027-07-31 の形で入力してください。");
        $("doc-expires").focus();
        return;
      }
      q.set("expires", expires);
    }
    const visitText = $("doc-visit").value.trim();
    if (visitText) {
      const visit = parseDate(visitText);
      if (!visit) {
        documentError("受診日は 2026-04-15 の形で入力してください（空欄なら今日）。");
        $("doc-visit").focus();
        return;
      }
      q.set("visit_date", visit);
    }
    const box = $("document-verdict");
    judgedDocument = null;
    $("document-record").hidden = true;
    $("document-recorded").hidden = true;
    try {
      const r = await fetch("/page/api/documents/verdict?" + q.toString(), {
        credentials: "same-origin",
        cache: "no-store",
      });
      const v = await r.json().catch(() => null);
      if (r.status === 401) {
        signedOut();
        return;
      }
      if (!r.ok) {
        documentError((v && v.detail) || "調べられませんでした（HTTP " + r.status + "）。");
        return;
      }
      clear(box);
      box.dataset.state = v.acceptable ? "ok" : "bad";
      const head = make("p", "verdict-head");
      const icon = make("span", "icon", v.acceptable ? "✓" : "✕");
      icon.setAttribute("aria-hidden", "true");
      head.appendChild(icon);
      head.appendChild(make("span", null, v.acceptable ? "受け付けられます" : "受け付けられません"));
      box.appendChild(head);
      box.appendChild(make("p", "verdict-what", v.kind_ja + "・受診日 " + dateJa(v.visit_date)));
      box.appendChild(make("p", "verdict-reason", v.reason_ja));
      if (v.requirements_ja && v.requirements_ja.length) {
        box.appendChild(make("p", "verdict-next", "すること:"));
        const ul = make("ul");
        for (const t of v.requirements_ja) ul.appendChild(make("li", null, t));
        box.appendChild(ul);
      }
      box.appendChild(make("p", "verdict-source", "根拠: " + v.source_ja + "（" + v.rule + "）"));
      if (v.acceptable) {
        judgedDocument = { kind: kind, with_card: with_card, visit_date: v.visit_date };
        if (q.get("expires")) judgedDocument.expires = q.get("expires");
        const record = $("document-record");
        record.reset();
        recordError("");
        record.hidden = false;
      }
    } catch (e) {
      documentError(UNREACHABLE);
    }
  }

  function recordError(text) {
    const e = $("document-record-error");
    e.textContent = text || "";
    e.hidden = !text;
  }

  async function recordDocument(ev) {
    ev.preventDefault();
    if (!judgedDocument) return;
    recordError("");
    const form = $("document-record");
    const body = Object.assign({}, judgedDocument);
    if (!fieldsInto(form, ["insurer", "symbol", "number", "branch"], body, recordError)) return;
    $("document-record-button").disabled = true;
    try {
      const [r, answer] = await postJson("/page/api/documents", body);
      if (r.status === 401) {
        signedOut();
      } else if (!r.ok) {
        recordError((answer && answer.detail) || "記録できませんでした（HTTP " + r.status + "）。");
      } else if (answer.status !== "recorded") {
        recordError(answer.reason_ja);
      } else {
        // Recorded once: a second press would record a second check.
        judgedDocument = null;
        form.hidden = true;
        const done = $("document-recorded");
        done.textContent =
          answer.kind_ja + "で受け付けて記録しました（確認ID: " + answer.check_id + "）。" +
          (body.number ? "記載の番号で資格を確認します。" : "番号が分かったら記録してください。");
        done.hidden = false;
        done.focus();
      }
    } catch (e) {
      recordError(UNREACHABLE);
    } finally {
      $("document-record-button").disabled = false;
    }
  }

  // ----- the event stream -----

  function refresh() {
    loadStatus().catch(() => {});
    loadPending().catch(() => {});
    loadHistory().catch(() => {});
  }

  function follow() {
    const es = new EventSource("/page/api/events");
    es.onopen = () => {
      $("stream").textContent = "更新を受信しています";
      // Whatever happened while the stream was closed.
      refresh();
    };
    es.onerror = () => {
      $("stream").textContent = "tsunagid からの更新が途切れました。再接続しています…";
    };
    es.addEventListener("line", refresh);
    es.addEventListener("readers", (e) => {
      try {
        renderReaders(JSON.parse(e.data).readers);
      } catch (_) {
        refresh();
      }
    });
    for (const kind of ["check_captured", "check_answered", "check_resolved", "check_updated", "resync"]) {
      es.addEventListener(kind, refresh);
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("result").tabIndex = -1;
    for (const b of document.querySelectorAll(".pad [data-digit]")) {
      b.addEventListener("click", () => addDigit(b.dataset.digit));
    }
    $("pin-clear").addEventListener("click", () => {
      pin = "";
      renderPin();
    });
    $("pin-back").addEventListener("click", () => {
      pin = pin.slice(0, -1);
      renderPin();
    });
    // Digits typed on a keyboard go to the pad too.
    $("pin-area").addEventListener("keydown", (e) => {
      if (/^[0-9]$/.test(e.key)) {
        addDigit(e.key);
        e.preventDefault();
      } else if (e.key === "Backspace") {
        pin = pin.slice(0, -1);
        renderPin();
        e.preventDefault();
      }
    });
    for (const r of document.querySelectorAll('input[name="method"]')) {
      r.addEventListener("change", renderForm);
    }
    $("photo-less").addEventListener("change", renderForm);
    $("check-form").addEventListener("submit", startCheck);
    $("speak-button").addEventListener("click", speak);
    $("speech-audio").addEventListener("error", speechFailed);
    $("speech-audio").addEventListener("playing", () => {
      $("speech-audio").dataset.state = "playing";
    });
    $("declaration-form").addEventListener("submit", saveDeclaration);
    $("declaration-done").tabIndex = -1;
    $("doc-kind").addEventListener("change", renderDocumentForm);
    $("document-form").addEventListener("submit", checkDocument);
    $("document-record").addEventListener("submit", recordDocument);
    $("document-recorded").tabIndex = -1;
    renderDocumentForm();
    renderForm();
    renderPin();
    refresh();
    follow();
  });
})();
