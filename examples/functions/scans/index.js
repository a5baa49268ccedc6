// scans: the warm path of the example's QR codes (story 2 of levee's
// design). Every answered /r/{code} request is captured into the `clicks`
// stream; levee's consumer hands them here in batches, in order per shard,
// as Kinesis events. A real one would add the counts to a database; this one
// logs them (the line shows in levee's log with the function's name).
'use strict';

exports.handler = async (event) => {
  const counts = {};
  for (const record of event.Records) {
    const click = JSON.parse(Buffer.from(record.kinesis.data, 'base64').toString('utf8'));
    const code = (click.params && click.params.code) || '?';
    counts[code] = (counts[code] || 0) + 1;
  }
  console.log('scans ' + JSON.stringify(counts));
  return {};
};
