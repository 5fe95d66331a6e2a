// The /docs and /redoc shells: the schema and every request carry the API token as a
// header. The token is asked for when the worker answers 401, kept in sessionStorage
// (this tab only) and never put in a URL.
(function () {
  "use strict";
  var KEY = "orderstream.apiToken";
  var form = document.getElementById("token-form");
  var input = document.getElementById("token");
  var status = document.getElementById("token-status");
  var forget = document.getElementById("forget-token");
  var viewer = document.getElementById("viewer");

  function token() { return sessionStorage.getItem(KEY); }

  function withToken(headers) {
    var t = token();
    if (t && !headers.Authorization) { headers.Authorization = "Bearer " + t; }
    return headers;
  }

  function ask(message) {
    status.textContent = message;
    form.hidden = false;
    forget.hidden = true;
    input.focus();
  }

  function render(spec) {
    form.hidden = true;
    forget.hidden = !token();
    if (viewer.dataset.viewer === "redoc") {
      Redoc.init(spec, {}, viewer);
      return;
    }
    SwaggerUIBundle({
      spec: spec,
      domNode: viewer,
      validatorUrl: null,  // no schema validator from outside
      requestInterceptor: function (request) {
        request.headers = withToken(request.headers || {});
        return request;
      },
    });
  }

  function load() {
    // relative: /docs and /redoc sit at the root of the API, behind a proxy prefix too
    fetch("openapi.json", { headers: withToken({}) }).then(function (answer) {
      if (answer.status === 401) {
        ask(token() ? "That token was refused: enter the worker's API_TOKEN."
                    : "This worker needs its API_TOKEN to show the API.");
        return null;
      }
      if (!answer.ok) { throw new Error("the schema answered HTTP " + answer.status); }
      return answer.json();
    }).then(function (spec) {
      if (spec) { render(spec); }
    }).catch(function (error) {
      ask("Could not load the API schema: " + error.message);
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value);
    input.value = "";
    load();
  });
  forget.addEventListener("click", function () {
    sessionStorage.removeItem(KEY);
    location.reload();
  });
  load();
})();
