/** The roles an account member can hold: shared by the users feature and every route's auth policy. */
export const USER_ROLES = ['admin', 'member'] as const;
export type UserRole = (typeof USER_ROLES)[number];
