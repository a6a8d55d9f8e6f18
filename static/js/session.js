const TOKEN_KEY = 'mss.access_token';

/** The access token lives in sessionStorage: it survives reloads but not closing the tab. */
export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  save(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};
