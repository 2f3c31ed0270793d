// Runs one Node.js Lambda handler from a code folder, as Lambda would (see lambda_runner.py):
//
//   node lambda_runner.cjs CODE_DIR MODULE.FUNCTION RESULT_FILE < event
//
// The AWS SDK for JavaScript comes from the project's node_modules (Lambda's runtime brings
// its own). CloudFormation's response URL is an HTTPS pre-signed S3 URL on port 443; the
// rehearsal's is plain HTTP on REHEARSAL_RESPONSE_PORT, so requests to it are sent there.
"use strict";
const fs = require("fs");
const http = require("http");
const https = require("https");
const path = require("path");

const responsePort = Number(process.env.REHEARSAL_RESPONSE_PORT);
https.request = (options, callback) =>
  http.request({ ...options, port: options.port || responsePort }, callback);

async function main() {
  const [codeDir, handler, resultFile] = process.argv.slice(2);
  const dot = handler.lastIndexOf(".");
  const module = require(path.join(path.resolve(codeDir), handler.slice(0, dot)));
  const event = JSON.parse(fs.readFileSync(0, "utf8"));
  const context = {
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME || "rehearsal",
    logStreamName: "rehearsal",
    getRemainingTimeInMillis: () => 15 * 60 * 1000,
  };
  const result = await module[handler.slice(dot + 1)](event, context);
  fs.writeFileSync(resultFile, JSON.stringify(result === undefined ? null : result));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
