/**
 * WAI-ARIA tabs: arrow keys, Home and End move between tabs; only the selected tab is in the tab order.
 * onChange(name) is called with the tab's data-tab when the selection changes.
 */
export class Tabs {
  constructor(tablist, onChange) {
    this.tabs = [...tablist.querySelectorAll('[role="tab"]')];
    this.onChange = onChange;
    for (const tab of this.tabs) tab.addEventListener('click', () => this.select(tab.dataset.tab));
    tablist.addEventListener('keydown', (event) => this.onKeydown(event));
  }

  get selected() {
    return this.tabs.find((tab) => tab.getAttribute('aria-selected') === 'true')?.dataset.tab;
  }

  select(name, { focus = false } = {}) {
    for (const tab of this.tabs) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      document.getElementById(tab.getAttribute('aria-controls')).hidden = !selected;
      if (selected && focus) tab.focus();
    }
    this.onChange?.(name);
  }

  onKeydown(event) {
    const index = this.tabs.findIndex((tab) => tab.dataset.tab === this.selected);
    const targets = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: this.tabs.length - 1 };
    if (!(event.key in targets)) return;
    event.preventDefault();
    const next = (targets[event.key] + this.tabs.length) % this.tabs.length;
    this.select(this.tabs[next].dataset.tab, { focus: true });
  }
}
