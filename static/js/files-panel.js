import { describeError } from './api.js';
import { h, icon, showMessage } from './dom.js';
import { formatBytes, formatDateTime } from './format.js';

const TYPE_ORDER = { directory: 0, symlink: 1, file: 2, other: 3 };

/** Browses a sandbox's volume: directories, downloads (with auth, via a blob) and uploads. */
export class FilesPanel {
  constructor({ api, elements }) {
    this.api = api;
    this.el = elements;
    this.path = '';
    this.el.refresh.addEventListener('click', () => void this.load());
    this.el.upload.addEventListener('change', () => void this.uploadSelected());
  }

  open(sandbox) {
    this.sandbox = sandbox;
    this.path = '';
    this.loaded = false;
    this.el.list.replaceChildren();
    showMessage(this.el.status, '');
  }

  /** Loads lazily, the first time the panel is shown. */
  ensureLoaded() {
    if (this.sandbox && !this.loaded) void this.load();
  }

  async navigate(path) {
    this.path = path;
    await this.load();
  }

  async load() {
    const sandbox = this.sandbox;
    this.loaded = true;
    this.renderBreadcrumbs();
    this.el.loading.hidden = false;
    try {
      const entries = await this.api.listFiles(sandbox.sandbox_id, this.path);
      if (sandbox !== this.sandbox) return;
      this.render(entries);
      showMessage(this.el.error, '');
    } catch (error) {
      if (sandbox !== this.sandbox) return;
      this.el.list.replaceChildren();
      showMessage(this.el.error, `Could not list ${this.path ? `“${this.path}”` : 'the files'}. ${describeError(error, { 404: 'That folder does not exist (any more).' })}`);
    } finally {
      this.el.loading.hidden = true;
    }
  }

  render(entries) {
    const sorted = entries.slice().sort((a, b) => (TYPE_ORDER[a.type] ?? 9) - (TYPE_ORDER[b.type] ?? 9) || a.name.localeCompare(b.name));
    const rows = sorted.map((entry) => this.renderEntry(entry));
    if (this.path) rows.unshift(this.renderParent());
    this.el.list.replaceChildren(...rows);
    this.el.empty.hidden = sorted.length > 0;
  }

  renderParent() {
    const parent = this.path.split('/').slice(0, -1).join('/');
    return h('li', { class: 'file-row' }, h('button', { type: 'button', class: 'file-name link-button', 'aria-label': 'Go up to the parent folder', onClick: () => void this.navigate(parent) }, icon('up'), '..'));
  }

  renderEntry(entry) {
    const isDirectory = entry.type === 'directory';
    const glyph = icon(isDirectory ? 'folder' : entry.type === 'symlink' ? 'link' : 'file');
    const name = isDirectory
      ? h('button', { type: 'button', class: 'file-name link-button', 'data-testid': 'file-open', onClick: () => void this.navigate(entry.path) }, glyph, entry.name)
      : h('span', { class: 'file-name' }, glyph, entry.name);
    const details = h('span', { class: 'file-details', text: [isDirectory ? 'Folder' : formatBytes(entry.size), formatDateTime(entry.modified_at)].filter(Boolean).join(' · ') });
    const actions =
      entry.type === 'file'
        ? h('button', { type: 'button', class: 'button button-small', 'data-testid': 'file-download', 'aria-label': `Download ${entry.name}`, text: 'Download', onClick: (event) => void this.download(entry, event.currentTarget) })
        : null;
    return h('li', { class: 'file-row', 'data-testid': 'file-entry', 'data-path': entry.path, 'data-type': entry.type }, name, details, actions);
  }

  async download(entry, button) {
    button.disabled = true;
    try {
      const blob = await this.api.downloadFile(this.sandbox.sandbox_id, entry.path);
      const url = URL.createObjectURL(blob);
      const link = h('a', { href: url, download: entry.name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (error) {
      showMessage(this.el.error, `Could not download “${entry.name}”. ${describeError(error, { 404: 'The file no longer exists.' })}`);
    } finally {
      button.disabled = false;
    }
  }

  async uploadSelected() {
    const file = this.el.upload.files?.[0];
    if (!file) return;
    const target = this.path ? `${this.path}/${file.name}` : file.name;
    showMessage(this.el.status, `Uploading ${file.name}…`, 'info');
    showMessage(this.el.error, '');
    try {
      const entry = await this.api.uploadFile(this.sandbox.sandbox_id, target, file);
      showMessage(this.el.status, `Uploaded ${entry?.path ?? target} (${formatBytes(entry?.size ?? file.size)}).`, 'success');
      await this.load();
    } catch (error) {
      showMessage(this.el.status, '');
      showMessage(this.el.error, `Could not upload “${file.name}”. ${describeError(error, { 413: 'The file is larger than the server accepts.' })}`);
    } finally {
      this.el.upload.value = '';
    }
  }

  renderBreadcrumbs() {
    const parts = this.path ? this.path.split('/') : [];
    const crumbs = [{ label: this.sandbox.volume_name || 'Volume', path: '' }, ...parts.map((part, index) => ({ label: part, path: parts.slice(0, index + 1).join('/') }))];
    this.el.breadcrumbs.replaceChildren(
      ...crumbs.map((crumb, index) =>
        h(
          'li',
          {},
          index === crumbs.length - 1
            ? h('span', { 'aria-current': 'location', text: crumb.label })
            : h('button', { type: 'button', class: 'link-button', text: crumb.label, onClick: () => void this.navigate(crumb.path) }),
        ),
      ),
    );
  }
}
