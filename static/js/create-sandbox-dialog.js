import { describeError } from './api.js';
import { h, showMessage } from './dom.js';

/** How often the form asks how a create stands while its POST is pending. */
const PROGRESS_POLL_MS = 500;
const WAITING_TEXT = 'Creating the sandbox… building the image can take a little while.';

/** The text of a sandbox's create progress (`progress` of GET /api/sandboxes). */
export function progressText(progress) {
  switch (progress?.phase) {
    case 'pulling_image':
      return progress.detail ? `Pulling image ${progress.detail}…` : 'Pulling image…';
    case 'unpacking_image':
      return 'Unpacking image…';
    case 'building':
      return progress.step && progress.steps ? `Building step ${progress.step} of ${progress.steps}` : 'Building the image…';
    case 'starting':
      return 'Starting the sandbox…';
    default:
      return WAITING_TEXT;
  }
}

/** Request fields a 400 answer may name at the start of a message. */
const FIELDS = ['image_base', 'dockerfile_commands', 'volume_name', 's3_bucket_name', 's3_key_prefix', 'init_from_s3', 'network', 'timeout_seconds'];

/**
 * The "New sandbox" dialog. Creating can take a while (image steps run first), so the form shows
 * progress, may be closed meanwhile, and hands the created sandbox to onCreated when it is running.
 */
export class CreateSandboxDialog {
  constructor({ api, dialog, onCreated }) {
    this.api = api;
    this.dialog = dialog;
    this.form = dialog.querySelector('form');
    this.error = dialog.querySelector('[data-role="form-error"]');
    this.progress = dialog.querySelector('[data-role="progress"]');
    this.progressText = dialog.querySelector('[data-role="progress-text"]');
    this.progressBar = dialog.querySelector('[data-role="progress-bar"]');
    this.submit = dialog.querySelector('button[type="submit"]');
    this.onCreated = onCreated;
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.create();
    });
    dialog.querySelector('[data-role="close"]').addEventListener('click', () => dialog.close());
  }

  /** Opens the form, optionally filled in from an earlier sandbox (to carry on with its volume). */
  open(template) {
    if (!this.creating) {
      this.form.reset();
      this.clearErrors();
      if (template) this.fill(template);
    }
    this.dialog.showModal();
    this.form.elements.image_base.focus();
  }

  fill(sandbox) {
    const fields = this.form.elements;
    fields.image_base.value = sandbox.image_base && sandbox.image_base !== 'host' ? sandbox.image_base : '';
    fields.dockerfile_commands.value = (sandbox.dockerfile_commands ?? []).join('\n');
    fields.volume_name.value = sandbox.volume_name ?? '';
    fields.s3_bucket_name.value = sandbox.s3_bucket_name ?? '';
    fields.s3_key_prefix.value = sandbox.s3_key_prefix ?? '';
    fields.init_from_s3.checked = Boolean(sandbox.init_from_s3);
    fields.network.value = sandbox.network ?? 'open';
    if (sandbox.timeout_seconds) fields.lifetime_minutes.value = String(Math.round(sandbox.timeout_seconds / 60));
  }

  request() {
    const fields = this.form.elements;
    const text = (name) => fields[name].value.trim();
    const commands = fields.dockerfile_commands.value
      .split('\n')
      .map((line) => line.trim())
      .filter(Boolean);
    const minutes = Number(text('lifetime_minutes'));
    const spec = {
      image_base: text('image_base') || undefined,
      dockerfile_commands: commands.length > 0 ? commands : undefined,
      volume_name: text('volume_name') || undefined,
      s3_bucket_name: text('s3_bucket_name') || undefined,
      s3_key_prefix: text('s3_key_prefix') || undefined,
      init_from_s3: fields.init_from_s3.checked || undefined,
      network: fields.network.value,
      timeout_seconds: minutes > 0 ? Math.round(minutes * 60) : undefined,
    };
    return Object.fromEntries(Object.entries(spec).filter(([, value]) => value !== undefined));
  }

  async create() {
    this.clearErrors();
    this.setCreating(true);
    const request = this.request();
    const stopWatching = this.watchProgress(request);
    try {
      const sandbox = await this.api.createSandbox(request).finally(stopWatching);
      this.dialog.close();
      this.form.reset();
      this.onCreated(sandbox);
    } catch (error) {
      this.showError(error);
      if (!this.dialog.open) this.dialog.showModal();
    } finally {
      this.setCreating(false);
    }
  }

  /**
   * While the POST is pending (the page learns the sandbox's id only from its answer), polls the
   * account's creating sandboxes and shows the progress of the newest one made from this request.
   * Returns the function that stops polling.
   */
  watchProgress(request) {
    let stopped = false;
    let timer;
    const imageBase = request.image_base ?? null;
    const commands = JSON.stringify(request.dockerfile_commands ?? []);
    const poll = async () => {
      try {
        const page = await this.api.listSandboxes({ status: 'creating', limit: 10 });
        const mine = (page.data ?? []).find((sandbox) => sandbox.image_base === imageBase && JSON.stringify(sandbox.dockerfile_commands) === commands);
        if (!stopped && mine?.progress) this.showProgress(mine.progress);
      } catch {
        // Progress is a courtesy: the POST's own answer says how the create ended.
      }
      if (!stopped) timer = setTimeout(poll, PROGRESS_POLL_MS);
    };
    this.showProgress(null);
    timer = setTimeout(poll, PROGRESS_POLL_MS);
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }

  /** Indeterminate bar but while building, where it counts steps. */
  showProgress(progress) {
    const text = progressText(progress);
    if (this.progressText.textContent !== text) this.progressText.textContent = text;
    this.progress.dataset.phase = progress?.phase ?? '';
    if (progress?.phase === 'building' && progress.step && progress.steps) {
      this.progressBar.max = progress.steps;
      this.progressBar.value = progress.step;
      this.progressBar.setAttribute('aria-valuetext', text);
    } else {
      this.progressBar.removeAttribute('value');
      this.progressBar.removeAttribute('max');
      this.progressBar.removeAttribute('aria-valuetext');
    }
    this.progressBar.title = progress?.detail ?? '';
  }

  setCreating(creating) {
    this.creating = creating;
    this.form.querySelector('fieldset').disabled = creating;
    this.submit.disabled = creating;
    this.progress.hidden = !creating;
    this.dialog.dataset.state = creating ? 'creating' : '';
  }

  showError(error) {
    showMessage(this.error, `The sandbox could not be created. ${describeError(error)}`);
    for (const line of error.messages ?? []) {
      const field = FIELDS.find((name) => line.startsWith(name));
      const input = field && this.form.elements[field === 'timeout_seconds' ? 'lifetime_minutes' : field];
      if (!input) continue;
      input.setAttribute('aria-invalid', 'true');
      const hint = h('p', { class: 'field-error', id: `${input.id}-error`, text: line });
      input.dataset.help ??= input.getAttribute('aria-describedby') ?? '';
      input.setAttribute('aria-describedby', `${input.dataset.help} ${hint.id}`.trim());
      input.closest('.field').append(hint);
    }
    (this.form.querySelector('[aria-invalid="true"]') ?? this.submit).focus();
  }

  clearErrors() {
    showMessage(this.error, '');
    for (const input of this.form.querySelectorAll('[aria-invalid]')) {
      input.removeAttribute('aria-invalid');
      if (input.dataset.help) input.setAttribute('aria-describedby', input.dataset.help);
      else input.removeAttribute('aria-describedby');
      delete input.dataset.help;
    }
    for (const hint of this.form.querySelectorAll('.field-error')) hint.remove();
  }
}
