import { Foundation1795362004383 } from './1795362004383-Foundation';

/** Migrations in the order they run; each is generated with `npm run migration:generate` and reviewed. */
export const MIGRATIONS: Function[] = [Foundation1795362004383];
