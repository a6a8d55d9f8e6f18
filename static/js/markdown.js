import { Marked } from '/vendor/marked.esm.js';
import DOMPurify from '/vendor/purify.es.mjs';
import { h } from './dom.js';

/**
 * Model output is untrusted. Markdown becomes HTML with marked, and that HTML is cleaned by
 * DOMPurify before it reaches the page: no scripts, no event handlers, no javascript: URLs,
 * no form controls that could imitate the page, and no images that would call out to other hosts.
 */
const PURIFY_OPTIONS = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'img', 'picture', 'video', 'audio', 'source', 'track', 'form', 'input', 'button', 'textarea', 'select', 'option', 'dialog'],
  FORBID_ATTR: ['style', 'srcset', 'formaction', 'target'],
  RETURN_DOM_FRAGMENT: true,
};

const markdown = new Marked({
  gfm: true,
  renderer: {
    // An image becomes a plain link to it: nothing is fetched unless the user asks for it.
    image({ href, text }) {
      return `<a href="${escapeAttribute(href)}">${escapeText(text || href)}</a>`;
    },
  },
});

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A' && node.hasAttribute('href')) {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

/** Markdown → a sanitized DocumentFragment, with code blocks given a language label and a copy button. */
export function renderMarkdown(text) {
  const fragment = DOMPurify.sanitize(markdown.parse(text ?? '').trim(), PURIFY_OPTIONS);
  for (const pre of fragment.querySelectorAll('pre')) decorateCodeBlock(pre);
  return fragment;
}

function decorateCodeBlock(pre) {
  const code = pre.querySelector('code');
  const language = /(?:^|\s)language-([\w+#.-]+)/.exec(code?.className ?? '')?.[1] ?? '';
  const copy = h('button', { type: 'button', class: 'code-copy', 'aria-label': 'Copy code', text: 'Copy' });
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText((code ?? pre).textContent);
      copy.textContent = 'Copied';
    } catch {
      copy.textContent = 'Copy failed';
    }
    setTimeout(() => (copy.textContent = 'Copy'), 1500);
  });
  const figure = h('div', { class: 'code-block' }, h('div', { class: 'code-head' }, h('span', { class: 'code-lang', text: language || 'text' }), copy));
  pre.replaceWith(figure);
  pre.tabIndex = 0;
  figure.append(pre);
}

function escapeText(value) {
  return String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function escapeAttribute(value) {
  return escapeText(value).replace(/"/g, '&quot;');
}
