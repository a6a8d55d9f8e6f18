import { ApiClient, describeError } from './api.js';
import { ChatPanel } from './chat.js';
import { CreateSandboxDialog } from './create-sandbox-dialog.js';
import { byId, h, showMessage } from './dom.js';
import { FilesPanel } from './files-panel.js';
import { formatRelative, shortId } from './format.js';
import { LoginView } from './login-view.js';
import { SandboxList, statusBadge } from './sandbox-list.js';
import { session } from './session.js';
import { SnapshotsPanel } from './snapshots-panel.js';
import { Tabs } from './tabs.js';
import { TerminateSandboxDialog } from './terminate-sandbox-dialog.js';

const ROUTE = /^#\/sandboxes\/([^/]+)$/;
const ENDED = new Set(['terminated', 'error']);

/** Wires the views together: sign-in, the sandbox list, and the selected sandbox's panels. */
class App {
  constructor() {
    this.api = new ApiClient({ getToken: () => session.token, onUnauthorized: () => this.signOut('Your session has expired. Please sign in again.') });
    this.login = new LoginView({
      api: this.api,
      elements: { view: byId('login-view'), form: byId('login-form'), error: byId('login-error'), submit: byId('login-submit') },
      onSignedIn: (token) => this.signedIn(token),
    });
    this.list = new SandboxList({
      api: this.api,
      elements: { list: byId('sandbox-list'), empty: byId('sandbox-list-empty'), error: byId('sandbox-list-error'), filter: byId('sandbox-filter'), more: byId('sandbox-more') },
      onSelect: (id) => this.navigateTo(id),
      onUpdate: (sandbox) => this.sandboxUpdated(sandbox),
    });
    this.chat = new ChatPanel({
      api: this.api,
      elements: {
        log: byId('chat-log'),
        history: byId('chat-history'),
        empty: byId('chat-empty'),
        loading: byId('chat-loading'),
        error: byId('chat-error'),
        notice: byId('sandbox-notice'),
        form: byId('composer'),
        prompt: byId('prompt'),
        send: byId('send'),
        cancel: byId('cancel-run'),
      },
      onSandboxChanged: (id) => void this.reloadSandbox(id),
      onCreateReplacement: (sandbox) => this.createDialog.open(sandbox),
    });
    this.files = new FilesPanel({
      api: this.api,
      elements: { list: byId('file-list'), empty: byId('files-empty'), loading: byId('files-loading'), error: byId('files-error'), status: byId('files-status'), breadcrumbs: byId('file-breadcrumbs'), refresh: byId('files-refresh'), upload: byId('file-upload') },
    });
    this.snapshots = new SnapshotsPanel({
      api: this.api,
      elements: { list: byId('snapshot-list'), empty: byId('snapshots-empty'), loading: byId('snapshots-loading'), error: byId('snapshots-error'), result: byId('snapshot-result'), create: byId('snapshot-now') },
    });
    this.tabs = new Tabs(byId('detail-tabs'), (name) => {
      if (name === 'files') this.files.ensureLoaded();
      if (name === 'snapshots') this.snapshots.ensureLoaded();
    });
    this.createDialog = new CreateSandboxDialog({
      api: this.api,
      dialog: byId('create-dialog'),
      onCreated: (sandbox) => {
        this.list.upsert(sandbox);
        this.notify(`Sandbox ${shortId(sandbox.sandbox_id)} is running.`);
        this.navigateTo(sandbox.sandbox_id);
      },
    });
    this.terminateDialog = new TerminateSandboxDialog({
      api: this.api,
      dialog: byId('terminate-dialog'),
      onTerminated: (sandbox) => {
        this.list.upsert(sandbox);
        this.notify(`Sandbox ${shortId(sandbox.sandbox_id)} was terminated.`);
      },
    });

    byId('new-sandbox').addEventListener('click', () => this.createDialog.open());
    byId('empty-new-sandbox').addEventListener('click', () => this.createDialog.open());
    byId('terminate').addEventListener('click', () => this.selected && this.terminateDialog.open(this.selected));
    byId('back-to-list').addEventListener('click', () => this.navigateTo(null));
    byId('sign-out').addEventListener('click', () => this.signOut('You signed out.'));
    window.addEventListener('hashchange', () => void this.route());
  }

  async start() {
    if (!session.token) {
      this.login.show();
      return;
    }
    try {
      await this.enter();
    } catch (error) {
      if (error.status !== 401) this.login.show(`Could not load your account. ${describeError(error)}`);
    }
  }

  async signedIn(token) {
    session.save(token);
    await this.enter();
  }

  async enter() {
    const user = await this.api.me();
    this.login.hide();
    byId('user-email').textContent = user.email;
    byId('account-menu').hidden = false;
    byId('app-view').hidden = false;
    await this.list.start();
    await this.route();
  }

  signOut(message) {
    if (!session.token && byId('app-view').hidden) return;
    session.clear();
    this.chat.close();
    this.list.stop();
    this.selected = null;
    byId('app-view').hidden = true;
    byId('account-menu').hidden = true;
    for (const dialog of document.querySelectorAll('dialog[open]')) dialog.close();
    history.replaceState(null, '', location.pathname);
    this.login.show(message);
  }

  navigateTo(sandboxId) {
    const hash = sandboxId ? `#/sandboxes/${encodeURIComponent(sandboxId)}` : '';
    if (location.hash === hash) return;
    if (hash) {
      location.hash = hash;
      return;
    }
    history.pushState(null, '', location.pathname);
    void this.route();
  }

  async route() {
    if (byId('app-view').hidden) return;
    const id = ROUTE.exec(location.hash)?.[1];
    const sandboxId = id ? decodeURIComponent(id) : null;
    if (sandboxId === (this.selected?.sandbox_id ?? null)) return;
    if (!sandboxId) {
      this.showDetail(null);
      return;
    }
    let sandbox = this.list.get(sandboxId);
    if (!sandbox) {
      try {
        sandbox = await this.api.getSandbox(sandboxId);
        this.list.upsert(sandbox);
      } catch (error) {
        this.notify(`Could not open that sandbox. ${describeError(error, { 404: 'It does not exist or belongs to another account.' })}`, 'error');
        history.replaceState(null, '', location.pathname);
        this.showDetail(null);
        return;
      }
    }
    this.showDetail(sandbox);
  }

  showDetail(sandbox) {
    this.selected = sandbox;
    this.list.select(sandbox?.sandbox_id ?? null);
    document.body.dataset.view = sandbox ? 'detail' : 'list';
    byId('detail-empty').hidden = Boolean(sandbox);
    byId('detail-body').hidden = !sandbox;
    if (!sandbox) {
      this.chat.close();
      return;
    }
    this.renderHeader(sandbox);
    this.files.open(sandbox);
    this.snapshots.open(sandbox);
    this.tabs.select('chat');
    void this.chat.open(sandbox);
  }

  sandboxUpdated(sandbox) {
    if (sandbox.sandbox_id !== this.selected?.sandbox_id) return;
    this.selected = sandbox;
    this.renderHeader(sandbox);
    this.chat.updateSandbox(sandbox);
    this.snapshots.updateSandbox(sandbox);
  }

  async reloadSandbox(sandboxId) {
    try {
      this.list.upsert(await this.api.getSandbox(sandboxId));
    } catch {
      // The next poll will try again.
    }
  }

  renderHeader(sandbox) {
    byId('detail-title').replaceChildren(h('span', { class: 'title-prefix', text: 'Sandbox ' }), shortId(sandbox.sandbox_id));
    byId('detail-title').title = sandbox.sandbox_id;
    byId('detail-status').replaceChildren(statusBadge(sandbox.status));
    const facts = [
      sandbox.image_base || 'default image',
      sandbox.volume_name ? `volume ${sandbox.volume_name} at ${sandbox.volume_mount_path}` : null,
      sandbox.network === 'none' ? 'no network' : 'network open',
      sandbox.timeout_seconds ? `lifetime ${Math.round(sandbox.timeout_seconds / 60)} min` : null,
      `created ${formatRelative(sandbox.created_at)}`,
    ];
    byId('detail-facts').replaceChildren(...facts.filter(Boolean).map((fact) => h('li', { text: fact })));
    byId('terminate').hidden = ENDED.has(sandbox.status);
  }

  notify(text, tone = 'info') {
    const toast = byId('toast');
    showMessage(toast, text, tone);
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => showMessage(toast, ''), 5000);
  }
}

void new App().start();
