import { describeError } from './api.js';
import { h, showMessage } from './dom.js';
import { formatRelative, shortId } from './format.js';

const PAGE_SIZE = 50;
const POLL_MS = 5000;
/** While a sandbox is starting its status changes soon: look more often. */
const FAST_POLL_MS = 1500;
const TRANSITIONAL = new Set(['creating']);

export const STATUS_LABELS = { creating: 'Starting', running: 'Running', terminated: 'Ended', error: 'Error' };

/** The sandboxes of the account, newest first, kept fresh by polling while the page is visible. */
export class SandboxList {
  constructor({ api, elements, onSelect, onUpdate }) {
    this.api = api;
    this.el = elements;
    this.onSelect = onSelect;
    this.onUpdate = onUpdate;
    this.sandboxes = new Map();
    this.order = [];
    this.nextCursor = null;
    this.selectedId = null;
    this.timer = null;
    this.running = false;

    this.el.filter.addEventListener('change', () => {
      this.sandboxes.clear();
      this.order = [];
      void this.refresh();
    });
    this.el.more.addEventListener('click', () => void this.loadMore());
    document.addEventListener('visibilitychange', () => {
      if (this.running && !document.hidden) void this.refresh();
    });
  }

  start() {
    this.running = true;
    return this.refresh();
  }

  stop() {
    this.running = false;
    clearTimeout(this.timer);
    this.sandboxes.clear();
    this.order = [];
    this.selectedId = null;
    this.el.list.replaceChildren();
  }

  get(sandboxId) {
    return this.sandboxes.get(sandboxId);
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      const page = await this.api.listSandboxes({ status: this.el.filter.value, limit: PAGE_SIZE });
      if (!this.running) return;
      this.merge(page.data, { replaceFirstPage: true });
      if (this.order.length <= PAGE_SIZE) this.nextCursor = page.next_cursor;
      await this.refreshSelectedOutsidePage();
      showMessage(this.el.error, '');
    } catch (error) {
      if (!this.running) return;
      showMessage(this.el.error, `Could not refresh the sandboxes. ${describeError(error)}`);
    } finally {
      this.schedule();
    }
  }

  async loadMore() {
    if (!this.nextCursor) return;
    this.el.more.disabled = true;
    try {
      const page = await this.api.listSandboxes({ status: this.el.filter.value, limit: PAGE_SIZE, cursor: this.nextCursor });
      this.merge(page.data, { replaceFirstPage: false });
      this.nextCursor = page.next_cursor;
    } catch (error) {
      showMessage(this.el.error, `Could not load more sandboxes. ${describeError(error)}`);
    } finally {
      this.el.more.disabled = false;
      this.render();
    }
  }

  /** A selected sandbox beyond the first page still needs a live status. */
  async refreshSelectedOutsidePage() {
    const id = this.selectedId;
    if (!id || this.firstPageIds?.has(id)) return;
    try {
      this.upsert(await this.api.getSandbox(id));
    } catch (error) {
      if (error.status !== 404) throw error;
    }
  }

  schedule() {
    if (!this.running) return;
    const transitional = [...this.sandboxes.values()].some((sandbox) => TRANSITIONAL.has(sandbox.status));
    this.timer = setTimeout(() => {
      if (document.hidden) this.schedule();
      else void this.refresh();
    }, transitional ? FAST_POLL_MS : POLL_MS);
  }

  merge(sandboxes, { replaceFirstPage }) {
    if (replaceFirstPage) this.firstPageIds = new Set(sandboxes.map((sandbox) => sandbox.sandbox_id));
    for (const sandbox of sandboxes) this.upsert(sandbox, { silent: true });
    this.order = [...this.sandboxes.values()].sort((a, b) => (a.created_at < b.created_at ? 1 : -1)).map((sandbox) => sandbox.sandbox_id);
    this.render();
  }

  /** Records a newer state of one sandbox and tells the page when something changed. */
  upsert(sandbox, { silent = false } = {}) {
    const previous = this.sandboxes.get(sandbox.sandbox_id);
    this.sandboxes.set(sandbox.sandbox_id, sandbox);
    if (!this.order.includes(sandbox.sandbox_id)) this.order.unshift(sandbox.sandbox_id);
    if (JSON.stringify(previous) !== JSON.stringify(sandbox)) this.onUpdate?.(sandbox, previous);
    if (!silent) this.render();
  }

  select(sandboxId) {
    this.selectedId = sandboxId;
    this.render();
  }

  render() {
    const status = this.el.filter.value;
    const items = this.order.map((id) => this.sandboxes.get(id)).filter((sandbox) => sandbox && (!status || sandbox.status === status || sandbox.sandbox_id === this.selectedId));
    this.el.empty.hidden = items.length > 0;
    this.el.more.hidden = !this.nextCursor;
    this.el.list.replaceChildren(...items.map((sandbox) => this.renderItem(sandbox)));
  }

  renderItem(sandbox) {
    const selected = sandbox.sandbox_id === this.selectedId;
    return h(
      'li',
      {},
      h(
        'button',
        {
          type: 'button',
          class: 'sandbox-item',
          'data-testid': 'sandbox-item',
          'data-sandbox-id': sandbox.sandbox_id,
          'data-status': sandbox.status,
          'aria-current': selected ? 'true' : undefined,
          onClick: () => this.onSelect(sandbox.sandbox_id),
        },
        h('span', { class: 'sandbox-item-top' }, h('span', { class: 'sandbox-item-id', text: shortId(sandbox.sandbox_id) }), statusBadge(sandbox.status)),
        h('span', { class: 'sandbox-item-meta', text: [sandbox.image_base || 'default image', sandbox.volume_name, formatRelative(sandbox.created_at)].filter(Boolean).join(' · ') }),
      ),
    );
  }
}

export function statusBadge(status) {
  return h('span', { class: `status-badge status-${status}`, 'data-testid': 'sandbox-status', text: STATUS_LABELS[status] ?? status });
}
