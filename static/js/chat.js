import { describeError } from './api.js';
import { h, showMessage } from './dom.js';
import { RunView } from './run-view.js';
import { followEventStream } from './sse.js';

/** How many finished runs replay their events at the same time when a conversation opens. */
const REPLAY_CONCURRENCY = 3;

const START_RUN_ERRORS = {
  503: 'No model credentials are configured on the server, so the agent cannot run. Ask an administrator to set them up.',
};

/**
 * The conversation of one sandbox: its persisted runs replayed from their event streams, the
 * active run followed live, and the prompt box.
 */
export class ChatPanel {
  constructor({ api, elements, onSandboxChanged, onCreateReplacement }) {
    this.api = api;
    this.el = elements;
    this.onSandboxChanged = onSandboxChanged;
    this.onCreateReplacement = onCreateReplacement;
    this.streams = new Set();
    this.cancelRequested = null;
    this.generation = 0;
    this.stuckToBottom = true;

    this.el.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.send();
    });
    this.el.prompt.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.el.form.requestSubmit();
      }
    });
    this.el.prompt.addEventListener('input', () => this.autosize());
    this.el.cancel.addEventListener('click', () => void this.cancel());
    this.el.log.addEventListener('scroll', () => {
      this.stuckToBottom = this.el.log.scrollHeight - this.el.log.scrollTop - this.el.log.clientHeight < 80;
    });
    new ResizeObserver(() => this.followBottom()).observe(this.el.history);
  }

  /** Shows the conversation of a sandbox, replacing whatever was shown before. */
  async open(sandbox) {
    this.close();
    const generation = this.generation;
    this.sandbox = sandbox;
    this.activeRun = null;
    this.el.history.replaceChildren();
    showMessage(this.el.error, '');
    this.el.loading.hidden = false;
    this.stuckToBottom = true;
    this.updateComposer();
    let runs;
    try {
      runs = await this.api.listRuns(sandbox.sandbox_id);
    } catch (error) {
      if (generation !== this.generation) return;
      this.el.loading.hidden = true;
      showMessage(this.el.error, `Could not load the conversation. ${describeError(error, { 404: 'This sandbox no longer exists.' })}`);
      return;
    }
    if (generation !== this.generation) return;
    this.el.loading.hidden = true;
    const views = runs
      .slice()
      .reverse()
      .map((run) => this.addRun(run));
    this.el.empty.hidden = views.length > 0;
    const active = views.find((view) => view.isActive);
    if (active) void this.follow(active);
    await this.replay(views.filter((view) => view !== active), generation);
  }

  /** Polling brought a newer state of the sandbox (e.g. it ended). */
  updateSandbox(sandbox) {
    if (sandbox.sandbox_id !== this.sandbox?.sandbox_id) return;
    this.sandbox = sandbox;
    this.updateComposer();
  }

  close() {
    this.generation += 1;
    for (const stream of this.streams) stream.close();
    this.streams.clear();
    this.sandbox = null;
    this.activeRun = null;
  }

  addRun(run) {
    const view = new RunView(run, { onChange: () => this.followBottom() });
    this.el.history.append(view.element);
    return view;
  }

  async replay(views, generation) {
    const queue = [...views];
    const worker = async () => {
      while (queue.length > 0 && generation === this.generation) await this.stream(queue.shift());
    };
    await Promise.all(Array.from({ length: REPLAY_CONCURRENCY }, worker));
  }

  /** Streams a run's events into its view; resolves when the run's final event has been shown. */
  stream(view) {
    return new Promise((resolve) => {
      const stream = followEventStream({
        url: this.api.runEventsUrl(view.run.sandbox_id ?? this.sandbox.sandbox_id, view.run.run_id),
        headers: () => this.api.authHeaders(),
        onEvent: (event) => view.apply(event),
        onState: (state) => {
          view.setConnectionState(state);
          if (state === 'closed') {
            this.streams.delete(stream);
            resolve();
          }
        },
        onFatal: (error) => {
          if (error.status === 401) this.api.onUnauthorized?.(error);
          view.fail(`The run's events could not be loaded. ${describeError(error, { 404: 'The run no longer exists.' })}`);
        },
      });
      this.streams.add(stream);
    });
  }

  async follow(view) {
    this.activeRun = view;
    this.updateComposer();
    const generation = this.generation;
    await this.stream(view);
    if (generation !== this.generation) return;
    if (this.activeRun === view) this.activeRun = null;
    this.updateComposer();
    this.onSandboxChanged?.(this.sandbox.sandbox_id);
    this.el.prompt.focus({ preventScroll: true });
  }

  async send() {
    const prompt = this.el.prompt.value.trim();
    if (!prompt || this.activeRun || !this.canPrompt()) return;
    const sandboxId = this.sandbox.sandbox_id;
    const generation = this.generation;
    showMessage(this.el.error, '');
    this.el.send.disabled = true;
    this.el.send.dataset.busy = 'true';
    try {
      const started = await this.api.startRun(sandboxId, { prompt, include_partial_messages: true });
      if (generation !== this.generation) return;
      this.el.prompt.value = '';
      this.autosize();
      this.el.empty.hidden = true;
      this.stuckToBottom = true;
      const view = this.addRun({ run_id: started.run_id, sandbox_id: sandboxId, status: started.status ?? 'queued', prompt, created_at: new Date().toISOString() });
      void this.follow(view);
    } catch (error) {
      if (generation !== this.generation) return;
      showMessage(this.el.error, `Your message was not sent. ${describeError(error, START_RUN_ERRORS)}`);
      if (error.status === 409) this.onSandboxChanged?.(sandboxId);
    } finally {
      delete this.el.send.dataset.busy;
      this.updateComposer();
    }
  }

  async cancel() {
    const view = this.activeRun;
    if (!view) return;
    this.cancelRequested = view;
    this.updateComposer();
    try {
      await this.api.cancelRun(this.sandbox.sandbox_id, view.run.run_id);
    } catch (error) {
      showMessage(this.el.error, `The run could not be cancelled. ${describeError(error)}`);
      this.cancelRequested = null;
      this.updateComposer();
    }
  }

  canPrompt() {
    return this.sandbox?.status === 'running';
  }

  updateComposer() {
    const sandbox = this.sandbox;
    const running = Boolean(this.activeRun);
    const usable = this.canPrompt() && !running;
    this.el.prompt.disabled = !usable;
    this.el.send.disabled = !usable || this.el.send.dataset.busy === 'true';
    this.el.cancel.hidden = !running;
    this.el.cancel.disabled = running && this.cancelRequested === this.activeRun;
    this.el.prompt.placeholder = running ? 'The agent is working…' : 'Message the agent';
    this.el.form.hidden = ['terminated', 'error'].includes(sandbox?.status);
    this.el.log.setAttribute('aria-busy', String(running));
    this.renderSandboxNotice(sandbox);
  }

  renderSandboxNotice(sandbox) {
    const notice = this.el.notice;
    if (!sandbox || sandbox.status === 'running') {
      notice.hidden = true;
      notice.replaceChildren();
      return;
    }
    notice.hidden = false;
    notice.dataset.status = sandbox.status;
    if (sandbox.status === 'creating') {
      notice.replaceChildren(h('p', { text: 'The sandbox is starting. You can send messages once it is running.' }));
      return;
    }
    const reason = sandbox.error || sandbox.exit_reason;
    notice.replaceChildren(
      h('p', {}, h('strong', { text: sandbox.status === 'error' ? 'This sandbox stopped because of an error.' : 'This sandbox has ended.' }), reason ? ` ${humanReason(reason)}` : '', ' Its conversation stays readable; to keep working, start a new sandbox.'),
      h('button', { type: 'button', class: 'button button-primary', 'data-testid': 'create-replacement', text: 'Create a new sandbox', onClick: () => this.onCreateReplacement?.(sandbox) }),
    );
  }

  autosize() {
    const prompt = this.el.prompt;
    prompt.style.height = 'auto';
    prompt.style.height = `${Math.min(prompt.scrollHeight, 240)}px`;
  }

  followBottom() {
    if (this.stuckToBottom) this.el.log.scrollTop = this.el.log.scrollHeight;
  }
}

function humanReason(reason) {
  const text = String(reason).replace(/_/g, ' ');
  const sentence = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(sentence) ? sentence : `${sentence}.`;
}
