import { describeError } from './api.js';
import { showMessage } from './dom.js';

/** The sign-in form: exchanges email and password for an access token. */
export class LoginView {
  constructor({ api, elements, onSignedIn }) {
    this.api = api;
    this.el = elements;
    this.onSignedIn = onSignedIn;
    this.el.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.signIn();
    });
  }

  show(message) {
    this.el.view.hidden = false;
    showMessage(this.el.error, message ?? '', 'info');
    this.el.form.elements.email.focus();
  }

  hide() {
    this.el.view.hidden = true;
    this.el.form.elements.password.value = '';
  }

  async signIn() {
    const { email, password } = this.el.form.elements;
    showMessage(this.el.error, '');
    this.el.submit.disabled = true;
    this.el.submit.dataset.busy = 'true';
    try {
      const { access_token: token } = await this.api.login(email.value.trim(), password.value);
      await this.onSignedIn(token);
    } catch (error) {
      showMessage(this.el.error, describeError(error, { 401: 'Wrong email or password.', 429: 'Too many sign-in attempts. Wait a minute and try again.' }));
      password.select();
    } finally {
      this.el.submit.disabled = false;
      delete this.el.submit.dataset.busy;
    }
  }
}
