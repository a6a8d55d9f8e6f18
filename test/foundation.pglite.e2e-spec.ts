import { describeFoundation, describeLoginRateLimit } from './support/foundation-suite';

describeFoundation('pglite');
describeLoginRateLimit();
