// tap coverage map: each test file covers the sources under protocol/ and lib/
// (bench/ and the test helpers are not measured).
export default (testFile) => (testFile.startsWith('test/') ? ['protocol/', 'lib/'] : null);
