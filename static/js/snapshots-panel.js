import { describeError } from './api.js';
import { h, showMessage } from './dom.js';
import { formatBytes, formatDateTime, formatDuration, plural } from './format.js';

/** A sandbox's snapshot versions and a "Snapshot now" button that reports what it saved. */
export class SnapshotsPanel {
  constructor({ api, elements }) {
    this.api = api;
    this.el = elements;
    this.el.create.addEventListener('click', () => void this.snapshotNow());
  }

  open(sandbox) {
    this.sandbox = sandbox;
    this.loaded = false;
    this.el.list.replaceChildren();
    showMessage(this.el.result, '');
    showMessage(this.el.error, '');
    this.updateSandbox(sandbox);
  }

  updateSandbox(sandbox) {
    if (sandbox.sandbox_id !== this.sandbox?.sandbox_id) return;
    this.sandbox = sandbox;
    this.el.create.disabled = sandbox.status !== 'running' || this.busy;
  }

  /** Still showing that sandbox: compared by id, since a status poll hands over the same sandbox as a new object. */
  isCurrent(sandbox) {
    return sandbox.sandbox_id === this.sandbox?.sandbox_id;
  }

  ensureLoaded() {
    if (this.sandbox && !this.loaded) void this.load();
  }

  async load() {
    const sandbox = this.sandbox;
    this.loaded = true;
    this.el.loading.hidden = false;
    try {
      const snapshots = await this.api.listSnapshots(sandbox.sandbox_id);
      if (!this.isCurrent(sandbox)) return;
      this.render(snapshots);
      showMessage(this.el.error, '');
    } catch (error) {
      if (!this.isCurrent(sandbox)) return;
      showMessage(this.el.error, `Could not list the snapshots. ${describeError(error)}`);
    } finally {
      this.el.loading.hidden = true;
    }
  }

  render(snapshots) {
    const sorted = snapshots.slice().sort((a, b) => b.version - a.version);
    this.el.empty.hidden = sorted.length > 0;
    this.el.list.replaceChildren(
      ...sorted.map((snapshot) =>
        h(
          'li',
          { class: 'snapshot-row', 'data-testid': 'snapshot-entry', 'data-version': snapshot.version },
          h('span', { class: 'snapshot-version', text: `v${snapshot.version}` }),
          h('span', { class: 'snapshot-details', text: `${plural(snapshot.files, 'file')} · ${formatBytes(snapshot.bytes)}` }),
          h('time', { class: 'snapshot-date', datetime: snapshot.created_at, text: formatDateTime(snapshot.created_at) }),
        ),
      ),
    );
  }

  async snapshotNow() {
    const sandbox = this.sandbox;
    this.busy = true;
    this.el.create.disabled = true;
    this.el.create.dataset.busy = 'true';
    showMessage(this.el.result, '');
    showMessage(this.el.error, '');
    try {
      const result = await this.api.createSnapshot(sandbox.sandbox_id);
      if (!this.isCurrent(sandbox)) return;
      showMessage(this.el.result, describeSnapshot(result), result.errors?.length || result.skipped?.length ? 'warning' : 'success');
      await this.load();
    } catch (error) {
      if (!this.isCurrent(sandbox)) return;
      showMessage(this.el.error, `The snapshot failed. ${describeError(error)}`);
    } finally {
      this.busy = false;
      delete this.el.create.dataset.busy;
      this.updateSandbox(this.sandbox);
    }
  }
}

function describeSnapshot(result) {
  const summary = `Saved snapshot v${result.version}: ${plural(result.files, 'file')} (${formatBytes(result.bytes_total)}) in ${formatDuration(result.duration_ms)}; ${formatBytes(result.bytes_uploaded)} uploaded, ${plural(result.files_copied, 'unchanged file')} reused.`;
  const skipped = result.skipped ?? [];
  const errors = result.errors ?? [];
  const notes = [];
  if (skipped.length > 0) notes.push(`${plural(skipped.length, 'entry', 'entries')} skipped (${listProblems(skipped, 'reason')}).`);
  if (errors.length > 0) notes.push(`${plural(errors.length, 'file')} could not be saved (${listProblems(errors, 'error')}).`);
  return [summary, ...notes].join(' ');
}

function listProblems(problems, field) {
  const listed = problems.slice(0, 3).map((problem) => `${problem.path}: ${problem[field]}`);
  return `${listed.join('; ')}${problems.length > 3 ? '; …' : ''}`;
}
