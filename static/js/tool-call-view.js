import { h } from './dom.js';

/** The input field that best says what a tool call is about, shown in its collapsed summary. */
const SUMMARY_FIELDS = ['file_path', 'command', 'pattern', 'path', 'url', 'query', 'description', 'prompt'];

/**
 * One tool call as a collapsible <details>: name and target in the summary, input and result
 * inside. Everything is set as text, never parsed as HTML.
 */
export class ToolCallView {
  constructor(id, name) {
    this.id = id;
    this.name = name || 'Tool';
    this.target = h('span', { class: 'tool-target' });
    this.status = h('span', { class: 'tool-status', 'data-testid': 'tool-status' });
    this.input = h('div', { class: 'tool-fields', 'data-testid': 'tool-input' });
    this.result = h('pre', { class: 'tool-result', 'data-testid': 'tool-result', tabindex: '0' });
    this.resultSection = h('section', { class: 'tool-section', hidden: true }, h('h4', { text: 'Result' }), this.result);
    this.element = h(
      'details',
      { class: 'tool-call', 'data-testid': 'tool-call', 'data-tool-name': this.name, 'data-tool-id': id },
      h('summary', {}, h('span', { class: 'tool-name', text: this.name }), this.target, this.status),
      h('div', { class: 'tool-body' }, h('section', { class: 'tool-section' }, h('h4', { text: 'Input' }), this.input), this.resultSection),
    );
    this.setState('preparing');
  }

  setInput(input) {
    const fields = input && typeof input === 'object' ? Object.entries(input) : [];
    this.input.replaceChildren(
      ...(fields.length === 0
        ? [h('p', { class: 'muted', text: 'No input' })]
        : fields.map(([key, value]) => h('div', { class: 'tool-field' }, h('div', { class: 'tool-key', text: key }), h('pre', { tabindex: '0', text: typeof value === 'string' ? value : JSON.stringify(value, null, 2) })))),
    );
    this.target.textContent = summarize(input);
    if (this.state === 'preparing') this.setState('running');
  }

  setResult(content, isError) {
    this.result.textContent = resultText(content) || '(empty result)';
    this.resultSection.hidden = false;
    this.setState(isError ? 'error' : 'done');
  }

  /** The run ended: a call still waiting will never get its result. */
  settle() {
    if (this.state === 'preparing' || this.state === 'running') this.setState('unfinished');
  }

  setState(state) {
    this.state = state;
    this.element.dataset.state = state;
    this.status.textContent = { preparing: 'Preparing…', running: 'Running…', done: 'Done', error: 'Error', unfinished: 'No result' }[state];
  }
}

function summarize(input) {
  if (!input || typeof input !== 'object') return '';
  const key = SUMMARY_FIELDS.find((field) => typeof input[field] === 'string') ?? Object.keys(input).find((field) => typeof input[field] === 'string');
  return key ? input[key].split('\n')[0] : '';
}

function resultText(content) {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return content === undefined || content === null ? '' : JSON.stringify(content, null, 2);
  return content.map((part) => (part?.type === 'text' ? part.text : `[${part?.type ?? 'content'}]`)).join('\n');
}
