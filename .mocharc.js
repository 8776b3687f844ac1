// In CI (CI=true) a pending test is a failure: a suite that cannot start must never look green.
module.exports = {
  spec: ['out/test/**/*.test.js'],
  timeout: 120000,
  reporter: 'spec',
  'enable-source-maps': true,
  require: ['out/test/helpers/exit-watchdog.js'],
  'forbid-pending': Boolean(process.env.CI),
};
