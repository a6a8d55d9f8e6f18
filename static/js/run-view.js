import { h } from './dom.js';
import { formatCost, formatCount, formatDuration, plural } from './format.js';
import { renderMarkdown } from './markdown.js';
import { ToolCallView } from './tool-call-view.js';

const ACTIVE_STATUSES = new Set(['queued', 'running']);

const STATUS_LABELS = {
  queued: 'Queued',
  running: 'Running',
  succeeded: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
  timed_out: 'Timed out',
  interrupted: 'Interrupted',
};

const ENDING_NOTICES = {
  failed: 'The run failed.',
  cancelled: 'You cancelled this run.',
  timed_out: 'The run took longer than its time limit and was stopped.',
  interrupted: 'The run was interrupted before it finished (the sandbox or the service stopped).',
};

const RESULT_ERRORS = {
  error_max_turns: 'The agent used all of its turns before finishing.',
  error_during_execution: 'The agent hit an error while working.',
};

export function isActiveRun(run) {
  return ACTIVE_STATUSES.has(run?.status);
}

/**
 * Renders one run (the user's prompt, then what the agent did) from the run's events. Partial
 * text from `stream_event` deltas is shown as it arrives and replaced by the final `assistant`
 * message once that comes, so nothing is shown twice.
 */
export class RunView {
  constructor(run, { onChange } = {}) {
    this.run = { ...run };
    this.onChange = onChange ?? (() => {});
    this.textBlocks = [];
    this.tools = new Map();
    this.messageByScope = new Map();
    this.pendingRender = new Set();
    this.renderFrame = null;
    this.unfollowable = false;

    this.blocks = h('div', { class: 'assistant-blocks' });
    this.typing = h('div', { class: 'typing', 'data-testid': 'run-working' }, h('span', { class: 'dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')), h('span', { text: 'Working…' }));
    this.notices = h('div', { class: 'run-notices' });
    this.meta = h('footer', { class: 'run-meta', 'data-testid': 'run-meta' });
    this.element = h(
      'article',
      { class: 'run', 'data-testid': 'run', 'data-run-id': run.run_id },
      h('div', { class: 'turn turn-user' }, h('div', { class: 'bubble', 'data-testid': 'user-prompt', text: run.prompt })),
      h('div', { class: 'turn turn-assistant', 'data-testid': 'assistant-turn' }, h('div', { class: 'avatar', 'aria-hidden': 'true', text: 'C' }), h('div', { class: 'assistant-body' }, this.blocks, this.typing, this.notices, this.meta)),
    );
    if (run.error && !isActiveRun(run)) this.addNotice(run.error);
    this.refresh();
  }

  get isActive() {
    return isActiveRun(this.run);
  }

  apply({ type, data }) {
    switch (type) {
      case 'system':
        if (data?.subtype === 'init' && data.model) this.run.model = data.model;
        break;
      case 'stream_event':
        this.applyStreamEvent(data);
        break;
      case 'assistant':
        this.applyAssistantMessage(data?.message);
        break;
      case 'user':
        this.applyToolResults(data?.message);
        break;
      case 'result':
        this.applyResult(data);
        break;
      case 'output':
      case 'stderr':
        this.addLogLine(type, data?.line ?? '');
        break;
      case 'error':
        this.addNotice(data?.message || 'The run reported an error.');
        break;
      case 'done':
        this.finish(data);
        break;
      default:
        break;
    }
    if (this.run.status === 'queued' && type !== 'done') this.run.status = 'running';
    this.refresh();
  }

  /** The stream cannot be followed (e.g. the run is gone): say so in place and stop looking busy. */
  fail(message) {
    this.unfollowable = true;
    this.addNotice(message);
    this.refresh();
  }

  setConnectionState(state) {
    this.element.dataset.connection = state;
    this.typing.lastChild.textContent = state === 'reconnecting' ? 'Connection lost, reconnecting…' : 'Working…';
  }

  applyStreamEvent(data) {
    const event = data?.event;
    const scope = data?.parent_tool_use_id ?? '';
    const messageId = this.messageByScope.get(scope);
    if (event?.type === 'message_start') {
      this.messageByScope.set(scope, event.message?.id);
    } else if (event?.type === 'content_block_start') {
      const block = event.content_block;
      if (block?.type === 'text') this.addTextBlock(messageId, event.index, block.text ?? '');
      else if (block?.type === 'tool_use') this.toolView(block.id, block.name);
    } else if (event?.type === 'content_block_delta' && event.delta?.type === 'text_delta') {
      const block = this.textBlocks.find((candidate) => !candidate.final && candidate.messageId === messageId && candidate.index === event.index) ?? this.addTextBlock(messageId, event.index, '');
      block.text += event.delta.text ?? '';
      this.scheduleRender(block);
    }
  }

  applyAssistantMessage(message) {
    const content = Array.isArray(message?.content) ? message.content : [];
    for (const block of content) {
      if (block?.type === 'text') {
        const partial = this.textBlocks.find((candidate) => !candidate.final && (candidate.messageId === message.id || candidate.messageId === undefined));
        const target = partial ?? this.addTextBlock(message.id, undefined, '');
        target.text = block.text ?? '';
        target.final = true;
        this.renderText(target);
      } else if (block?.type === 'tool_use') {
        this.toolView(block.id, block.name).setInput(block.input);
      } else if (block?.type === 'thinking' && block.thinking) {
        this.blocks.append(h('details', { class: 'thinking' }, h('summary', { text: 'Thinking' }), h('p', { text: block.thinking })));
      }
    }
  }

  applyToolResults(message) {
    const content = Array.isArray(message?.content) ? message.content : [];
    for (const block of content) {
      if (block?.type === 'tool_result') this.toolView(block.tool_use_id).setResult(block.content, block.is_error === true);
    }
  }

  applyResult(result) {
    Object.assign(this.run, pick(result, ['total_cost_usd', 'usage', 'num_turns', 'session_id', 'duration_ms']));
    if (result?.is_error) this.addNotice(RESULT_ERRORS[result.subtype] ?? (typeof result.result === 'string' && result.result ? result.result : 'The agent reported an error.'));
  }

  finish(done) {
    Object.assign(this.run, pick(done, ['status', 'exit_code', 'session_id', 'total_cost_usd', 'usage']));
    if (this.run.status === 'running' || this.run.status === 'queued') this.run.status = 'failed';
    for (const tool of this.tools.values()) tool.settle();
    for (const block of this.textBlocks.filter((candidate) => !candidate.final)) {
      block.final = true;
      this.renderText(block);
    }
    const ending = ENDING_NOTICES[this.run.status];
    const tone = this.run.status === 'cancelled' ? 'info' : 'error';
    if (ending && !this.notices.hasChildNodes()) this.addNotice(this.run.status === 'failed' && typeof done?.exit_code === 'number' ? `${ending} (exit code ${done.exit_code})` : ending, tone);
  }

  addTextBlock(messageId, index, text) {
    const block = { messageId, index, text, final: false, element: h('div', { class: 'markdown', 'data-testid': 'assistant-text', 'data-state': 'streaming' }) };
    this.textBlocks.push(block);
    this.blocks.append(block.element);
    if (text) this.scheduleRender(block);
    return block;
  }

  toolView(id, name) {
    let view = this.tools.get(id);
    if (!view) {
      view = new ToolCallView(id, name);
      this.tools.set(id, view);
      this.blocks.append(view.element);
    }
    return view;
  }

  /** Deltas arrive faster than the screen refreshes: re-render a streaming block once per frame. */
  scheduleRender(block) {
    this.pendingRender.add(block);
    this.renderFrame ??= requestAnimationFrame(() => {
      this.renderFrame = null;
      for (const pending of this.pendingRender) this.renderText(pending);
      this.pendingRender.clear();
      this.onChange();
    });
  }

  renderText(block) {
    this.pendingRender.delete(block);
    block.element.replaceChildren(renderMarkdown(block.text));
    block.element.dataset.state = block.final ? 'final' : 'streaming';
  }

  addNotice(text, tone = 'error') {
    this.notices.append(h('p', { class: `notice notice-${tone}`, role: tone === 'error' ? 'alert' : 'status', 'data-testid': 'run-notice', text }));
  }

  addLogLine(stream, line) {
    if (!this.log) {
      this.logLines = h('pre', { class: 'run-log-lines', tabindex: '0' });
      this.logSummary = h('summary');
      this.log = h('details', { class: 'run-log', 'data-testid': 'run-log' }, this.logSummary, this.logLines);
      this.notices.before(this.log);
      this.logCount = 0;
    }
    this.logCount += 1;
    this.logSummary.textContent = `Process output (${plural(this.logCount, 'line')})`;
    this.logLines.append(h('span', { class: `log-${stream}`, text: `${line}\n` }));
  }

  refresh() {
    this.typing.hidden = !this.isActive || this.unfollowable;
    this.element.dataset.status = this.run.status;
    this.meta.replaceChildren(...metaParts(this.run));
    this.onChange();
  }
}

function metaParts(run) {
  const parts = [h('span', { class: `status-pill status-${run.status}`, 'data-testid': 'run-status', text: STATUS_LABELS[run.status] ?? run.status })];
  if (typeof run.total_cost_usd === 'number') parts.push(h('span', { 'data-testid': 'run-cost', text: formatCost(run.total_cost_usd) }));
  const usage = run.usage;
  if (usage) {
    const input = (usage.input_tokens ?? 0) + (usage.cache_read_input_tokens ?? 0) + (usage.cache_creation_input_tokens ?? 0);
    parts.push(h('span', { 'data-testid': 'run-tokens', title: 'Input tokens include cached ones', text: `${formatCount(input)} in · ${formatCount(usage.output_tokens)} out tokens` }));
  }
  if (run.num_turns) parts.push(h('span', { text: plural(run.num_turns, 'turn') }));
  const duration = run.duration_ms ?? (run.started_at && run.finished_at ? new Date(run.finished_at) - new Date(run.started_at) : undefined);
  if (duration !== undefined && !isActiveRun(run)) parts.push(h('span', { text: formatDuration(duration) }));
  return parts;
}

function pick(source, keys) {
  const picked = {};
  for (const key of keys) if (source?.[key] !== undefined && source[key] !== null) picked[key] = source[key];
  return picked;
}
